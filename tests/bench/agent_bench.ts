/**
 * Agent bench: start-up to ready (cold and restart, median of 3, one lab node), then the agent's
 * RSS and idle CPU with 10k Services × 10 endpoints in the services file and 100 leases (99
 * simulated remote nodes in the embedded store), beside the targets (RSS ≤ 150 MB, idle CPU
 * < 1% of a core, ready < 2 s) as value/target ratios. The agent is started with the unit's
 * ExecStart line (the real deno binary). Alone: `deno run -A tests/bench/agent_bench.ts
 * [--services N] [--endpoints N] [--idle-seconds S]`.
 */
import { parseArgs } from "node:util";
import type { BenchResult } from "./main.ts";
import { createEmbeddedStore } from "../../agent/overlay/embedded_store.ts";
import { createLab, type Lab, type LabNode } from "../lab/lab.ts";
import {
  agentGet,
  type AgentWorld,
  createAgentWorld,
  LAB_NETWORK,
  type LabAgent,
  removeAgentWorld,
  skiff,
  startAgent,
  writeNodeConfig,
} from "../agent/agent_lab.ts";

/** The targets. */
export const TARGETS = { rssMb: 150, idleCpuPercent: 1, readyMs: 2000 } as const;

/** Options of {@linkcode benchAgent}. */
export interface AgentBenchOptions {
  /** Services in the services file (default 10 000). */
  readonly services?: number;
  /** Endpoints per Service (default 10). */
  readonly endpoints?: number;
  /** Leases in the store, the node's own included (default 100). */
  readonly leases?: number;
  /** Length of the idle CPU window in seconds (default 10). */
  readonly idleSeconds?: number;
  /** How long the big sync may take before the bench reports what it has (default 300 s). */
  readonly syncTimeoutMs?: number;
  /** Also measure CPU over a window holding one periodic resync (35 s more; default true). */
  readonly withResync?: boolean;
}

/** Production-like settings: the config's default resync, info logs. */
const AGENT_EXTRA = { resyncSeconds: 30, log: { level: "info", format: "json" } };
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function ipOf(base: number, k: number): string {
  return `10.${base + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;
}

/** The services file text: n Services with ClusterIP 10.96+.x.y:80, `per` distinct endpoints. */
export function servicesFileText(n: number, per: number, nodes: readonly string[]): string {
  const services = [];
  for (let i = 0; i < n; i++) {
    const endpoints = [];
    for (let j = 0; j < per; j++) {
      endpoints.push({ ip: ipOf(128, i * per + j), node: nodes[(i + j) % nodes.length] });
    }
    services.push({
      namespace: "bench",
      name: `s${i}`,
      clusterIP: ipOf(96, i + 1),
      ports: [{ port: 80, targetPort: 8080, protocol: "TCP" }],
      endpoints,
    });
  }
  return JSON.stringify({ services });
}

/** utime+stime of a process, in clock ticks. */
async function cpuTicks(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of stat(5)
}

/** A field of /proc/<pid>/status in kB (VmRSS, VmHWM). */
async function statusKb(pid: number, field: string): Promise<number> {
  const text = await Deno.readTextFile(`/proc/${pid}/status`);
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

/** The agent's pid is the unit's ExecStart binary (nsenter execs it): check it is deno. */
async function agentPid(agent: LabAgent): Promise<number> {
  const pid = agent.child.pid;
  let exe = "";
  for (let i = 0; i < 100; i++) {
    exe = await Deno.readLink(`/proc/${pid}/exe`);
    if (/\/deno$/.test(exe)) return pid;
    await new Promise((r) => setTimeout(r, 10)); // nsenter has not exec'd yet
  }
  throw new Error(`agent pid ${pid} runs ${exe}, not deno`);
}

async function stopAgent(agent: LabAgent): Promise<void> {
  agent.child.kill("SIGTERM");
  const t = setTimeout(() => agent.child.kill("SIGKILL"), 20_000);
  await agent.child.status;
  clearTimeout(t);
}

/** Polls /readyz as fast as a curl in the node allows; ms from `t0` to the first 200. */
async function readyAfter(node: LabNode, t0: number, timeoutMs: number): Promise<number> {
  while (performance.now() - t0 < timeoutMs) {
    if ((await agentGet(node, "/readyz")).status === 200) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`agent on ${node.name} not ready after ${timeoutMs} ms`);
}

async function statusz(node: LabNode): Promise<Record<string, unknown> | undefined> {
  const r = await agentGet(node, "/statusz");
  try {
    return r.status ? JSON.parse(r.body) : undefined;
  } catch {
    return undefined;
  }
}

async function install(world: AgentWorld, node: LabNode): Promise<string> {
  const cfg = await writeNodeConfig(world, node, AGENT_EXTRA);
  const out = await skiff(node, [
    "install",
    "-c",
    cfg,
    "--no-start",
    "--unit-dir",
    `${world.dir}/${node.name}/units`,
  ]);
  if (out.code !== 0) throw new Error(`skiff install: ${out.stderr}`);
  return cfg;
}

async function uninstall(world: AgentWorld, node: LabNode, cfg: string): Promise<void> {
  const out = await skiff(node, [
    "uninstall",
    "-c",
    cfg,
    "--unit-dir",
    `${world.dir}/${node.name}/units`,
  ]);
  if (out.code !== 0) throw new Error(`skiff uninstall: ${out.stdout}${out.stderr}`);
}

/** Start-up to ready: 3 cold starts (uninstalled node) and 3 restarts, empty services file. */
async function benchStartup(lab: Lab, world: AgentWorld): Promise<BenchResult[]> {
  const node = lab.nodes[0];
  const cold: number[] = [];
  const restart: number[] = [];
  for (let i = 0; i < 3; i++) {
    const cfg = await install(world, node);
    const t0 = performance.now();
    const agent = await startAgent(lab, world, node, AGENT_EXTRA);
    cold.push(await readyAfter(node, t0, 30_000));
    await stopAgent(agent);
    const t1 = performance.now();
    const again = await startAgent(lab, world, node, AGENT_EXTRA);
    restart.push(await readyAfter(node, t1, 30_000));
    await stopAgent(again);
    await uninstall(world, node, cfg);
  }
  const c = median(cold);
  const r = median(restart);
  return [
    { name: "ready after a cold start (median of 3)", value: c, unit: "ms" },
    { name: "  ratio to target 2 s", value: c / TARGETS.readyMs, unit: "x" },
    { name: "ready after a restart (median of 3)", value: r, unit: "ms" },
    { name: "  ratio to target 2 s", value: r / TARGETS.readyMs, unit: "x" },
  ];
}

/** Puts `count` leases of simulated remote nodes into the store (distinct underlay IPs, MACs). */
async function seedLeases(world: AgentWorld, count: number): Promise<void> {
  const store = await createEmbeddedStore({ dir: world.storeDir });
  try {
    await store.initNetworkConfig(LAB_NETWORK);
    for (let i = 0; i < count; i++) {
      const hex = (i + 1).toString(16).padStart(4, "0");
      await store.acquireLease({
        publicIp: `192.168.100.${101 + i}`, // on the lab underlay; nothing answers there
        backendType: "vxlan",
        vni: 1,
        vtepMac: `02:5b:00:00:${hex.slice(0, 2)}:${hex.slice(2)}`,
      });
    }
  } finally {
    await store.close();
  }
}

/** RSS and idle CPU with a big desired state. */
async function benchLoaded(
  lab: Lab,
  world: AgentWorld,
  o: Required<AgentBenchOptions>,
): Promise<BenchResult[]> {
  const node = lab.nodes[0];
  const scale = `${o.services} Services × ${o.endpoints}, ${o.leases} leases`;
  await install(world, node);
  const remotes = Array.from({ length: o.leases - 1 }, (_, i) => `remote${i + 1}`);
  await Deno.writeTextFile(
    world.servicesFile,
    servicesFileText(o.services, o.endpoints, [node.name, ...remotes]),
  );
  await seedLeases(world, o.leases - 1);
  const t0 = performance.now();
  const agent = await startAgent(lab, world, node, AGENT_EXTRA);
  const pid = await agentPid(agent);
  const results: BenchResult[] = [];
  let synced = false;
  let syncNote = "";
  let syncAt: string | undefined;
  try {
    const readyMs = await readyAfter(node, t0, o.syncTimeoutMs);
    const s = await statusz(node);
    const svc = s?.services as { services?: number; durationMs?: number } | undefined;
    synced = svc?.services === o.services;
    syncAt = (svc as { at?: string } | undefined)?.at;
    syncNote = synced ? "" : `statusz services=${JSON.stringify(svc)}`;
    results.push({ name: `ready with ${scale}`, value: readyMs, unit: "ms" });
    if (svc?.durationMs !== undefined) {
      results.push({
        name: "  Service sync at ready (the agent's own report)",
        value: svc.durationMs,
        unit: "ms",
      });
    }
  } catch (error) {
    syncNote = `not ready within ${o.syncTimeoutMs} ms (${(error as Error).message})`;
  }
  const routes = await node.run(["ip", "-o", "route", "show", "dev", "flannel.1"], {
    allowFailure: true,
  });
  const peerRoutes = routes.stdout.split("\n").filter(Boolean).length;
  results.push({
    name: "  peer routes on flannel.1 (want leases − 1)",
    value: peerRoutes,
    unit: "",
  });
  // The agent resyncs everything every resyncSeconds. Window 1 starts just after a resync
  // (so no resync falls in it): the quiet cost. Window 2 is one whole resync period: the
  // average cost, resync included.
  const period = AGENT_EXTRA.resyncSeconds;
  let resyncSeen = false;
  let resyncMs: number | undefined;
  if (o.withResync && syncAt) {
    const end = performance.now() + (period + 15) * 1000;
    while (performance.now() < end && !resyncSeen) {
      await new Promise((r) => setTimeout(r, 200));
      const svc = (await statusz(node))?.services as
        | { at?: string; durationMs?: number }
        | undefined;
      resyncSeen = svc?.at !== undefined && svc.at !== syncAt;
      if (resyncSeen && svc?.durationMs !== undefined) resyncMs = svc.durationMs;
    }
  }
  await new Promise((r) => setTimeout(r, 1000)); // let the resync's garbage settle
  const rssMb = (await statusKb(pid, "VmRSS")) / 1024;
  const hwmMb = (await statusKb(pid, "VmHWM")) / 1024;
  const cpuOver = async (seconds: number): Promise<number> => {
    const c0 = await cpuTicks(pid);
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    return ((await cpuTicks(pid)) - c0) / TICKS_PER_SECOND / ((performance.now() - w0) / 1000) *
      100;
  };
  const cpu = await cpuOver(o.idleSeconds);
  const rssAfter = (await statusKb(pid, "VmRSS")) / 1024;
  const cpuPeriod = o.withResync ? await cpuOver(period) : undefined;
  await stopAgent(agent);
  const tag = synced ? scale : `${scale}, SYNC NOT FINISHED: ${syncNote}`;
  const rss = Math.max(rssMb, rssAfter);
  results.push(
    { name: `agent RSS (${tag})`, value: rss, unit: "MB" },
    { name: "  ratio to target 150 MB", value: rss / TARGETS.rssMb, unit: "x" },
    { name: "  peak RSS (VmHWM)", value: hwmMb, unit: "MB" },
    {
      name: `agent idle CPU, ${o.idleSeconds} s ${
        resyncSeen ? "right after a resync" : "after ready"
      }`,
      value: cpu,
      unit: "% of a core",
    },
    { name: "  ratio to target 1%", value: cpu / TARGETS.idleCpuPercent, unit: "x" },
  );
  if (resyncMs !== undefined) {
    results.push({
      name: "  periodic resync, data plane part (agent's own report)",
      value: resyncMs,
      unit: "ms",
    });
  }
  if (cpuPeriod !== undefined) {
    results.push(
      {
        name: `agent CPU over one ${period} s resync period`,
        value: cpuPeriod,
        unit: "% of a core",
      },
      { name: "  ratio to target 1%", value: cpuPeriod / TARGETS.idleCpuPercent, unit: "x" },
    );
  }
  return results;
}

/** The agent bench (see the module doc). */
export async function benchAgent(options: AgentBenchOptions = {}): Promise<BenchResult[]> {
  const o: Required<AgentBenchOptions> = {
    services: options.services ?? 10_000,
    endpoints: options.endpoints ?? 10,
    leases: options.leases ?? 100,
    idleSeconds: options.idleSeconds ?? 10,
    syncTimeoutMs: options.syncTimeoutMs ?? 300_000,
    withResync: options.withResync ?? true,
  };
  const results: BenchResult[] = [];
  {
    await using lab = await createLab({ nodes: 1, outside: false });
    const world = await createAgentWorld(lab);
    try {
      results.push(...await benchStartup(lab, world));
    } finally {
      await removeAgentWorld(world);
    }
  }
  {
    await using lab = await createLab({ nodes: 1, outside: false });
    const world = await createAgentWorld(lab);
    try {
      results.push(...await benchLoaded(lab, world, o));
      const cfg = `${world.dir}/${lab.nodes[0].name}.json`;
      await uninstall(world, lab.nodes[0], cfg).catch(() => {});
    } finally {
      await removeAgentWorld(world);
    }
  }
  return results;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      services: { type: "string" },
      endpoints: { type: "string" },
      leases: { type: "string" },
      "idle-seconds": { type: "string" },
      "no-resync": { type: "boolean" },
    },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const results = await benchAgent({
    services: num(values.services),
    endpoints: num(values.endpoints),
    leases: num(values.leases),
    idleSeconds: num(values["idle-seconds"]),
    withResync: !values["no-resync"],
  });
  for (const r of results) {
    console.log(
      `${r.name.padEnd(72)} ${r.value.toFixed(r.value >= 100 ? 0 : 3).padStart(10)} ${r.unit}`,
    );
  }
}
