/**
 * CNI bench: ADD+DEL latency (p50/p99) of the skiff plugin (shim → Deno → bridge + host-local,
 * and shim → agent socket → bridge + host-local) against the reference bridge plugin alone with
 * the same config, the ratios, the full conflist chain through the pod driver, and the shim's
 * start-up time. Every measurement goes through nsenter into the node namespace. Run alone with
 * `deno run -A tests/bench/cni_bench.ts`; `deno task bench` imports benchCni().
 */

import { addPod, delPod } from "../../agent/cni/runtime.ts";
import { createCniNode } from "../cni/cni_node.ts";

/** One measured number. */
export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

const ROUNDS = 25;

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Measures the skiff chain against bridge alone, and the shim start-up, on a one-node fixture. */
export async function benchCni(): Promise<BenchResult[]> {
  await using node = await createCniNode();
  const netns = await node.addNetns("b1");
  const skiffConf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "skiff",
    type: "skiff",
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
    delegate: { hairpinMode: true, isDefaultGateway: true },
  });
  const bridgeConf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "skiff",
    type: "bridge",
    bridge: "cni0",
    isGateway: true,
    isDefaultGateway: true,
    hairpinMode: true,
    mtu: 1450,
    ipMasq: false,
    ipam: {
      type: "host-local",
      dataDir: node.ipamDataDir,
      ranges: [[{ subnet: "10.244.1.0/24", gateway: "10.244.1.1" }]],
      routes: [{ dst: "10.244.0.0/16", gw: "10.244.1.1" }],
    },
  });
  const env = (command: string) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: "bench",
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: node.binDir,
  });
  const cycle = async (type: string, conf: string): Promise<number> => {
    const t0 = performance.now();
    const add = await node.plugin(env("ADD"), conf, type);
    const del = await node.plugin(env("DEL"), conf, type);
    const ms = performance.now() - t0;
    if (add.code !== 0 || del.code !== 0) {
      throw new Error(`${type} ADD/DEL failed: ${add.stdout} ${del.stdout}`);
    }
    return ms;
  };
  await cycle("skiff", skiffConf); // warm: bridge creation, version cache, page cache
  await cycle("bridge", bridgeConf);
  const skiff: number[] = [];
  const bridge: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    skiff.push(await cycle("skiff", skiffConf));
    bridge.push(await cycle("bridge", bridgeConf));
  }
  const startup: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    const out = await node.plugin({ CNI_COMMAND: "VERSION" }, "");
    startup.push(performance.now() - t0);
    if (out.code !== 0) throw new Error(`VERSION failed: ${out.stderr}`);
  }
  const bridgeVersion: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    await node.plugin({ CNI_COMMAND: "VERSION" }, "", "bridge");
    bridgeVersion.push(performance.now() - t0);
  }
  // the fast path: the agent's socket server answers, the shim only forwards
  const stopServer = await node.startServer();
  const fast: number[] = [];
  const bridge2: number[] = [];
  const fastStartup: number[] = [];
  try {
    await cycle("skiff", skiffConf);
    for (let i = 0; i < ROUNDS; i++) {
      fast.push(await cycle("skiff", skiffConf));
      bridge2.push(await cycle("bridge", bridgeConf));
    }
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      const out = await node.plugin({ CNI_COMMAND: "VERSION" }, "");
      fastStartup.push(performance.now() - t0);
      if (out.code !== 0) throw new Error(`VERSION failed: ${out.stderr}`);
    }
  } finally {
    await stopServer();
  }
  const chain: number[] = [];
  for (let i = 0; i < 10; i++) {
    const name = `${node.prefix}q${i}`;
    const t0 = performance.now();
    await addPod(name, node.driver, {
      portMappings: [{ hostPort: 30000 + i, containerPort: 80, protocol: "tcp" }],
    });
    await delPod(name, node.driver);
    chain.push(performance.now() - t0);
  }
  const p50s = percentile(skiff, 50);
  const p50b = percentile(bridge, 50);
  return [
    { name: "skiff ADD+DEL p50", value: p50s, unit: "ms" },
    { name: "skiff ADD+DEL p99", value: percentile(skiff, 99), unit: "ms" },
    { name: "bridge ADD+DEL p50", value: p50b, unit: "ms" },
    { name: "bridge ADD+DEL p99", value: percentile(bridge, 99), unit: "ms" },
    { name: "skiff/bridge p50 ratio", value: p50s / p50b, unit: "x" },
    {
      name: "skiff/bridge p99 ratio",
      value: percentile(skiff, 99) / percentile(bridge, 99),
      unit: "x",
    },
    { name: "fast path: skiff ADD+DEL p50", value: percentile(fast, 50), unit: "ms" },
    { name: "fast path: skiff ADD+DEL p99", value: percentile(fast, 99), unit: "ms" },
    {
      name: "fast path: skiff/bridge p50 ratio",
      value: percentile(fast, 50) / percentile(bridge2, 50),
      unit: "x",
    },
    {
      name: "fast path: skiff/bridge p99 ratio",
      value: percentile(fast, 99) / percentile(bridge2, 99),
      unit: "x",
    },
    { name: "fast path: shim VERSION p50", value: percentile(fastStartup, 50), unit: "ms" },
    { name: "shim start-up (VERSION) p50", value: percentile(startup, 50), unit: "ms" },
    { name: "shim start-up (VERSION) p99", value: percentile(startup, 99), unit: "ms" },
    { name: "bridge VERSION p50 (Go exec)", value: percentile(bridgeVersion, 50), unit: "ms" },
    {
      name: "pod add+del, netns + skiff + portmap p50",
      value: percentile(chain, 50),
      unit: "ms",
    },
  ];
}

if (import.meta.main) {
  for (const r of await benchCni()) console.log(`${r.name}\t${r.value.toFixed(2)}\t${r.unit}`);
}
