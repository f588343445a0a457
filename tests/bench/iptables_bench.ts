/**
 * The iptables data plane's numbers, inside a lab node: sync time for 10k Services and for
 * one endpoint change (legacy and nft), and TCP connect rate / latency through a ClusterIP at
 * 1, 1k and 10k Services (the measured Service is the last in dispatch order), beside a direct
 * connect to the Pod IP. Every loop is bounded in count and time.
 * @module
 */
import { createLab, type LabHost } from "../lab/lab.ts";
import { type IptablesMode, makeBackend } from "../../agent/fallback/iptables_backend.ts";
import { IptablesDataplane } from "../../agent/fallback/iptables_dataplane.ts";
import type { ServiceEntry, ServiceSnapshot } from "../../agent/lb/model.ts";
import { addPod, CLUSTER_CIDR } from "../fallback/lab_pods.ts";

/** One measured number. */
interface BenchResult {
  name: string;
  value: number;
  unit: string;
}

const ACCEPT_SERVER = `
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 8080))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
`;

// Sequential connects; SO_LINGER 0 closes with RST so neither TIME_WAIT nor conntrack piles up.
const CONNECT_CLIENT = `
import json, socket, struct, sys, time
ip, port, n, tmax = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lat, fails = [], 0
start = time.perf_counter()
while len(lat) + fails < n and time.perf_counter() - start < tmax:
    s = socket.socket()
    s.settimeout(1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    t = time.perf_counter()
    try:
        s.connect((ip, port))
        lat.append(time.perf_counter() - t)
    except OSError:
        fails += 1
    s.close()
elapsed = time.perf_counter() - start
lat.sort()
print(json.dumps({"n": len(lat), "fails": fails, "rate": len(lat) / elapsed,
  "p50": lat[len(lat) // 2] * 1e6 if lat else 0, "p99": lat[int(len(lat) * 0.99)] * 1e6 if lat else 0}))
`;

function services(count: number, backendIp: string, node: string): ServiceEntry[] {
  // Names sort so the real one ("szzz-target") comes last in SKIFF-SERVICES: the worst case.
  const out: ServiceEntry[] = [];
  for (let i = 0; i < count - 1; i++) {
    out.push({
      service: {
        namespace: "bench",
        name: `s${String(i).padStart(5, "0")}`,
        clusterIPs: [`10.96.${(i >> 8) & 255}.${i & 255}`],
        externalIPs: [],
        loadBalancerIPs: [],
        ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }],
        sessionAffinity: "None",
        affinityTimeoutSeconds: 10800,
        externalTrafficPolicy: "Cluster",
        internalTrafficPolicy: "Cluster",
      },
      endpoints: [0, 1].map((j) => ({
        ip: `10.250.${(i >> 7) & 255}.${((i & 127) << 1) + j}`,
        node: "elsewhere",
        ready: true,
        serving: true,
        terminating: false,
      })),
    });
  }
  out.push({
    service: {
      namespace: "bench",
      name: "szzz-target",
      clusterIPs: ["10.97.0.1"],
      externalIPs: [],
      loadBalancerIPs: [],
      ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }],
      sessionAffinity: "None",
      affinityTimeoutSeconds: 10800,
      externalTrafficPolicy: "Cluster",
      internalTrafficPolicy: "Cluster",
    },
    endpoints: [{ ip: backendIp, node, ready: true, serving: true, terminating: false }],
  });
  return out;
}

async function connects(
  client: LabHost,
  ip: string,
): Promise<{ rate: number; p50: number; p99: number; fails: number }> {
  const out = await client.run(["python3", "-c", CONNECT_CLIENT, ip, "80", "3000", "4"]);
  return JSON.parse(out.stdout);
}

/** Runs the iptables benchmark in a throw-away lab (about 30–60 s). */
export async function benchIptables(): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  const client = await addPod(lab, node, 1);
  const backend = await addPod(lab, node, 2);
  lab.spawn(backend, ["python3", "-c", ACCEPT_SERVER]);
  for (let i = 0; i < 100; i++) {
    if ((await backend.run(["ss", "-Hlnt"])).stdout.includes(":8080 ")) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  // The DNAT target is the Pod's port 8080; direct connects use it too.
  const direct = await client.run([
    "python3",
    "-c",
    CONNECT_CLIENT.replace("ip, port,", "ip, _port,").replace(
      "s.connect((ip, port))",
      "s.connect((ip, 8080))",
    ),
    backend.ip!,
    "80",
    "3000",
    "4",
  ]);
  const d = JSON.parse(direct.stdout);
  results.push(
    { name: "direct Pod IP: connects/s", value: d.rate, unit: "conn/s" },
    { name: "direct Pod IP: connect p50", value: d.p50, unit: "µs" },
  );

  for (const mode of ["legacy", "nft"] as IptablesMode[]) {
    const plane = new IptablesDataplane(makeBackend(mode, "bench", node.nsPath), {
      nodeName: node.name,
      clusterCidr: CLUSTER_CIDR,
    });
    const big = 10000;
    for (const count of [1, 1000, 10000]) {
      const snapshot: ServiceSnapshot = { services: services(count, backend.ip!, node.name) };
      const full = await plane.sync(snapshot);
      console.error(`bench: ${mode} synced ${count} Services in ${full.durationMs.toFixed(0)} ms`);
      if (count === big) {
        results.push({
          name: `${mode}: sync ${count} Services (from 1000)`,
          value: full.durationMs,
          unit: "ms",
        });
        const changed = snapshot.services.map((e, i) =>
          i !== count >> 1 ? e : { ...e, endpoints: [{ ...e.endpoints[0], ip: "10.251.0.1" }] }
        );
        const one = await plane.sync({ services: changed });
        console.error(`bench: ${mode} one change in ${one.durationMs.toFixed(0)} ms`);
        results.push(
          {
            name: `${mode}: sync one endpoint change at ${count}`,
            value: one.durationMs,
            unit: "ms",
          },
          { name: `${mode}: lines written for that change`, value: one.operations, unit: "lines" },
        );
        const same = await plane.sync({ services: changed });
        results.push({
          name: `${mode}: no-op sync at ${count}`,
          value: same.durationMs,
          unit: "ms",
        });
      }
      const c = await connects(client, "10.97.0.1");
      console.error(`bench: ${mode} connects at ${count}: ${JSON.stringify(c)}`);
      if (c.fails > 0) throw new Error(`${c.fails} connects failed at ${count} Services`);
      results.push(
        { name: `${mode}: connects/s at ${count} Services`, value: c.rate, unit: "conn/s" },
        { name: `${mode}: connect p50 at ${count} Services`, value: c.p50, unit: "µs" },
        { name: `${mode}: connect p99 at ${count} Services`, value: c.p99, unit: "µs" },
      );
    }
    const started = performance.now();
    await plane.uninstall();
    results.push({
      name: `${mode}: uninstall at ${big} Services`,
      value: performance.now() - started,
      unit: "ms",
    });
  }
  return results;
}

if (import.meta.main) {
  for (const r of await benchIptables()) console.log(`${r.name}\t${r.value.toFixed(1)} ${r.unit}`);
}
