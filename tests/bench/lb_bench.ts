/**
 * Service LB benchmark, side by side in one run: cold sync of 10k Services × 10 backends and
 * one endpoint change (maps only, at the default and a small Maglev table size), then in the
 * lab direct Pod IP vs VIP through socket LB at 1, 1k, 10k and 100k Services (the target last):
 * new connections/s, connect p50/p99, keepalive requests/s, single-stream throughput, ratios.
 */
import type { BenchResult } from "./main.ts";
import { buildBpf } from "../../agent/bpf/build.ts";
import { BpfDataplane } from "../../agent/lb/bpf_dataplane.ts";
import { LbMaps } from "../../agent/lb/lb_maps.ts";
import { diffLb, maglevTableOf, planLb } from "../../agent/lb/map_plan.ts";
import { parseServiceEntry } from "../../agent/lb/validate.ts";
import type { Endpoint, ServiceEntry, ServiceSnapshot } from "../../agent/lb/model.ts";
import { LbReconciler, readLbState } from "../../agent/lb/reconciler.ts";
import { loadForTest } from "../lb/prog_run.ts";
import {
  createServiceWorld,
  type PeerClient,
  service,
  type ServiceWorld,
} from "../lb/service_world.ts";

const NODE = { nodeName: "n1", nodeIPs: ["192.168.100.11"] };

function ipOf(base: number, k: number): string {
  return `10.${base + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;
}

/** n Services "s<i>" with ClusterIP 10.96+.x.y:80 and `per` endpoints each (distinct IPs). */
function bigSnapshot(n: number, per: number): ServiceSnapshot {
  const services: ServiceEntry[] = [];
  for (let i = 0; i < n; i++) {
    const endpoints: Endpoint[] = [];
    for (let j = 0; j < per; j++) {
      endpoints.push({
        ip: ipOf(128, i * per + j),
        node: j % 2 ? "n2" : "n1",
        ready: true,
        serving: true,
        terminating: false,
      });
    }
    services.push({
      service: service(`s${i}`, {
        clusterIPs: [ipOf(96, i + 1)],
        ports: [{ name: "", protocol: "TCP", port: 80, targetPort: 8080 }],
      }),
      endpoints,
    });
  }
  return { services };
}

export async function measureSync(maglevSize: number): Promise<BenchResult[]> {
  const tag = `M=${maglevSize}`;
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: maglevSize } });
  using maps = LbMaps.open(obj.maps, { maglevSize });
  const snap = bigSnapshot(10_000, 10);
  const t0 = performance.now();
  const empty = readLbState(maps);
  const planned = diffLb(planLb(snap, NODE), empty, maglevSize);
  const computeMs = performance.now() - t0;
  // the diff names tables by source; the writer builds them one at a time into one buffer
  const t1 = performance.now();
  const buffer = new Uint32Array(maglevSize);
  for (const [, source] of planned.maglevUpserts) maglevTableOf(source, buffer);
  const tablesMs = performance.now() - t1;
  const cold = new LbReconciler(maps, NODE).sync(snap);
  // one endpoint of Service #5000 replaced
  const changed: ServiceSnapshot = {
    services: snap.services.map((e, i) =>
      i === 5000
        ? { ...e, endpoints: [...e.endpoints.slice(1), { ...e.endpoints[0], ip: "10.250.0.1" }] }
        : e
    ),
  };
  const r = new LbReconciler(maps, NODE);
  r.sync(snap); // warm: reads the maps once
  const change = r.sync(changed);
  const restart = new LbReconciler(maps, NODE).sync(changed);
  // the same change with parsed entries (frozen), as BpfDataplane passes them: an entry passed
  // again as the same frozen object is known unchanged without comparing it
  const parsed: ServiceSnapshot = { services: snap.services.map((e) => parseServiceEntry(e)) };
  const parsedChanged: ServiceSnapshot = {
    services: parsed.services.map((
      e,
      i,
    ) => (i === 5000 ? parseServiceEntry(changed.services[i]) : e)),
  };
  const p = new LbReconciler(maps, NODE);
  p.sync(parsed);
  const parsedChange = p.sync(parsedChanged);
  return [
    { name: `cold sync 10k×10 (${tag}) total`, value: cold.durationMs, unit: "ms" },
    { name: `cold sync 10k×10 (${tag}) plan+diff only`, value: computeMs, unit: "ms" },
    { name: `cold sync 10k×10 (${tag}) building the Maglev tables`, value: tablesMs, unit: "ms" },
    { name: `cold sync 10k×10 (${tag}) map operations`, value: cold.operations, unit: "ops" },
    { name: `one endpoint change at 10k (${tag})`, value: change.durationMs, unit: "ms" },
    {
      name: `one endpoint change at 10k (${tag}), parsed entries`,
      value: parsedChange.durationMs,
      unit: "ms",
    },
    {
      name: `one endpoint change at 10k (${tag}) map operations`,
      value: change.operations,
      unit: "ops",
    },
    { name: `restart sync at 10k, unchanged (${tag})`, value: restart.durationMs, unit: "ms" },
    { name: `restart sync at 10k (${tag}) map operations`, value: restart.operations, unit: "ops" },
  ];
}

interface ConnBench {
  ok: number;
  failed: number;
  rate: number;
  p50Us: number;
  p99Us: number;
  samplesUs: number[];
}

interface Side {
  rate: number;
  p50Us: number;
  p99Us: number;
  failed: number;
}

/**
 * Alternates direct and VIP in short rounds, so load from the rest of the (shared) machine
 * hits both sides alike; rates are totals over the rounds, percentiles over all samples.
 */
async function sideBySide(
  direct: PeerClient,
  vip: PeerClient,
  command: "bench",
  rounds = 6,
  ms = 400,
): Promise<[Side, Side]> {
  const acc = [{ n: 0, secs: 0, samples: [] as number[], failed: 0 }, {
    n: 0,
    secs: 0,
    samples: [] as number[],
    failed: 0,
  }];
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of [direct, vip].entries()) {
      const t0 = performance.now();
      const res = await c.cmd<ConnBench>(`${command} ${ms}`);
      acc[i].secs += (performance.now() - t0) / 1000;
      acc[i].n += res.ok;
      acc[i].failed += res.failed;
      acc[i].samples.push(...res.samplesUs);
    }
  }
  return acc.map((a) => {
    a.samples.sort((x, y) => x - y);
    const pct = (p: number) =>
      a.samples[Math.min(a.samples.length - 1, Math.floor(p * a.samples.length))];
    return { rate: a.n / a.secs, p50Us: pct(0.5), p99Us: pct(0.99), failed: a.failed };
  }) as [Side, Side];
}

async function keepaliveSideBySide(direct: PeerClient, vip: PeerClient): Promise<[number, number]> {
  const sums = [0, 0];
  for (let r = 0; r < 4; r++) {
    for (const [i, c] of [direct, vip].entries()) {
      sums[i] += (await c.cmd<{ rate: number }>("keepalive 400")).rate;
    }
  }
  return [sums[0] / 4, sums[1] / 4];
}

async function iperf(world: ServiceWorld, target: string): Promise<number> {
  const out = await world.lab.spawn(world.client, [
    "iperf3",
    "-c",
    target,
    "-p",
    "5201",
    "-t",
    "1",
    "-J",
  ], { cgroup: world.node.cgroup }).output();
  const json = JSON.parse(new TextDecoder().decode(out.stdout));
  return json.end.sum_received.bits_per_second / 1e9;
}

/** Builds tc_lb.o and sock_lb.o with extra -D flags into a temp dir; returns the dir. */
async function buildVariant(cflags: string[]): Promise<string> {
  const outDir = await Deno.makeTempDir({ prefix: "sklbbench" });
  await buildBpf({
    outDir,
    programs: [
      { name: "tc_lb", sources: ["tc_lb.c"], cflags },
      { name: "sock_lb", sources: ["sock_lb.c"], cflags },
      // BpfDataplane.install loads it too (UDP socket purge); it has no size tunables.
      { name: "sock_destroy", sources: ["sock_destroy.c"] },
    ],
  });
  return outDir;
}

async function benchConnections(
  scales: readonly number[],
  variant?: { label: string; objectDir: string },
): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  const tag = variant ? ` (${variant.label})` : "";
  await using world = await createServiceWorld((_lab, node) =>
    BpfDataplane.install({
      pinDir: node.pinDir,
      cgroup: node.cgroup,
      devices: [node.uplink],
      netns: node.nsPath,
      nodeName: node.name,
      nodeIPs: [node.ip],
      objectDir: variant?.objectDir,
    })
  );
  // thousands of short connections per step leave the client's ports in TIME_WAIT; without
  // reuse the kernel's search for a free port, not the path being measured, dominates later
  // steps (direct and VIP alike)
  await world.client.run([
    "sysctl",
    "-q",
    "-w",
    "net.ipv4.tcp_tw_reuse=1",
    "net.ipv4.ip_local_port_range=1024 65000",
  ]);
  const b1 = world.backend("b1");
  world.lab.spawn(b1.host, ["iperf3", "-s", "-p", "5201"]);
  const target: ServiceEntry = {
    service: service("target", {
      clusterIPs: ["10.96.0.10"],
      ports: [
        { name: "http", protocol: "TCP", port: 80, targetPort: 8080 },
        { name: "iperf", protocol: "TCP", port: 5201, targetPort: 5201 },
      ],
    }),
    endpoints: world.endpoints("b1"),
  };
  const fillerEndpoints = world.endpoints("b2");
  const direct = world.startClient(world.client, b1.ip, 8080, true);
  const vip = world.startClient(world.client, "10.96.0.10", 80, true);
  for (const scale of scales) {
    const fillers: ServiceEntry[] = Array.from({ length: scale - 1 }, (_, i) => ({
      service: service(`f${i}`, {
        clusterIPs: [ipOf(97, i + 1)],
        ports: [{ name: "", protocol: "TCP", port: 80, targetPort: 8080 }],
      }),
      endpoints: fillerEndpoints,
    }));
    const report = await world.dataplane.sync({ services: [...fillers, target] });
    results.push({
      name: `sync to ${scale} Services${tag}`,
      value: report.durationMs,
      unit: "ms",
    });
    // let this process's garbage collector settle after a big sync: on 2 vCPUs it would
    // compete with the clients being measured
    await new Promise((r) => setTimeout(r, 3000));
    const [d, v] = await sideBySide(direct, vip, "bench");
    if (d.failed || v.failed) {
      throw new Error(`connections failed: direct ${d.failed}, VIP ${v.failed}`);
    }
    results.push(
      { name: `${scale} Services${tag}: direct connections/s`, value: d.rate, unit: "conn/s" },
      { name: `${scale} Services${tag}: VIP connections/s`, value: v.rate, unit: "conn/s" },
      {
        name: `${scale} Services${tag}: VIP/direct connection rate`,
        value: v.rate / d.rate,
        unit: "ratio",
      },
      { name: `${scale} Services${tag}: direct connect p50`, value: d.p50Us, unit: "µs" },
      { name: `${scale} Services${tag}: VIP connect p50`, value: v.p50Us, unit: "µs" },
      { name: `${scale} Services${tag}: direct connect p99`, value: d.p99Us, unit: "µs" },
      { name: `${scale} Services${tag}: VIP connect p99`, value: v.p99Us, unit: "µs" },
    );
    if (scale === 1 && !variant) {
      const [dk, vk] = await keepaliveSideBySide(direct, vip);
      results.push(
        { name: "keepalive requests/s direct", value: dk, unit: "req/s" },
        { name: "keepalive requests/s VIP", value: vk, unit: "req/s" },
        { name: "keepalive VIP/direct", value: vk / dk, unit: "ratio" },
      );
      let dt = 0;
      let vt = 0;
      for (let r = 0; r < 2; r++) {
        dt += await iperf(world, b1.ip);
        vt += await iperf(world, "10.96.0.10");
      }
      results.push(
        { name: "single-stream throughput direct", value: dt, unit: "Gbit/s" },
        { name: "single-stream throughput VIP", value: vt, unit: "Gbit/s" },
        { name: "throughput VIP/direct", value: vt / dt, unit: "ratio" },
      );
    }
  }
  return results;
}

/**
 * The whole LB benchmark (a few minutes on 2 vCPUs). 100k Services run on a build with
 * SKIFF_MAGLEV_M=1021 (4 KiB per table): at the default 16381, 100k tables would take 6.5 GiB
 * of kernel memory.
 */
export async function benchLb(): Promise<BenchResult[]> {
  const results = [
    ...await measureSync(16381),
    ...await measureSync(1021),
    ...await benchConnections([1, 1000, 10_000]),
  ];
  const small = await buildVariant(["-DSKIFF_MAGLEV_M=1021", "-DSKIFF_MAX_SERVICES=131072"]);
  try {
    results.push(
      ...await benchConnections([1, 100_000], { label: "M=1021", objectDir: small }),
    );
  } finally {
    await Deno.remove(small, { recursive: true });
  }
  return results;
}
