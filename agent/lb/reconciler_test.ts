/**
 * LbReconciler against real pinned maps (the tc_lb object loaded with bpftool): stable ids and
 * no writes across a restart, make-before-break results, Maglev disruption, flow purge.
 */
import assert from "node:assert/strict";
import { loadForTest } from "../../tests/lb/prog_run.ts";
import type { Endpoint, Service, ServiceEntry, ServiceSnapshot } from "./model.ts";
import { BackendFlag, Ct, IPPROTO, MAGLEV_M } from "./lb_abi.ts";
import { LbMaps } from "./lb_maps.ts";
import {
  LbCapacityError,
  LbReconciler,
  readLbState,
  sameData,
  samePlanInput,
} from "./reconciler.ts";

const NODE = { nodeName: "n1", nodeIPs: ["192.168.100.11"] };

function web(protocol: "TCP" | "UDP" = "TCP", affinity = false): Service {
  return {
    namespace: "default",
    name: "web",
    clusterIPs: ["10.96.0.10"],
    externalIPs: [],
    loadBalancerIPs: [],
    ports: [{ name: "", protocol, port: 80, targetPort: 8080 }],
    sessionAffinity: affinity ? "ClientIP" : "None",
    affinityTimeoutSeconds: 60,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
  };
}

function eps(n: number, from = 1): Endpoint[] {
  return Array.from({ length: n }, (_, i) => ({
    ip: `10.244.1.${from + i}`,
    node: "n1",
    ready: true,
    serving: true,
    terminating: false,
  }));
}

function snap(service: Service, endpoints: Endpoint[]): ServiceSnapshot {
  return { services: [{ service, endpoints }] };
}

Deno.test("a new reconciler over the same maps keeps every id and writes nothing", async () => {
  await using obj = await loadForTest("tc_lb");
  const s = snap(web(), eps(5));
  {
    using maps = LbMaps.open(obj.maps);
    const first = new LbReconciler(maps, NODE).sync(s);
    assert.ok(first.operations > 0);
  }
  using maps = LbMaps.open(obj.maps);
  const before = readLbState(maps);
  const report = new LbReconciler(maps, NODE).sync(s);
  assert.equal(report.operations, 0);
  assert.deepEqual(readLbState(maps), before);
});

Deno.test("a restart rewrites exactly the Maglev tables that are wrong, nothing else", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const services = Array.from({ length: 4 }, (_, i) => ({
    service: { ...web(), name: `s${i}`, clusterIPs: [`10.96.0.${10 + i}`] },
    endpoints: eps(3 + i, 10 * i + 1),
  }));
  const s: ServiceSnapshot = { services };
  new LbReconciler(maps, NODE).sync(s);
  const ids = [...maps.revNat].sort(([a], [b]) => a - b).map(([id]) => id);
  const good = new Map(ids.map((id) => [id, maps.maglev.get(id)!.backend_id]));
  // a sync killed between a table and its slots leaves another set's table (here s1's in s0);
  // a zeroed table; a table with one backend's slots given to another
  maps.maglev.set(ids[0], { backend_id: good.get(ids[1])! });
  maps.maglev.set(ids[2], { backend_id: new Uint32Array(251) });
  const t3 = good.get(ids[3])!;
  const other = t3.find((v) => v !== t3[0])!;
  maps.maglev.set(ids[3], { backend_id: t3.map((v) => (v === t3[0] ? other : v)) });
  const report = new LbReconciler(maps, NODE).sync(s);
  assert.equal(report.operations, 3, "three tables rewritten, nothing else");
  for (const id of ids) assert.deepEqual(maps.maglev.get(id)!.backend_id, good.get(id), `${id}`);
  assert.equal(new LbReconciler(maps, NODE).sync(s).operations, 0);
});

Deno.test("frontends with the same backends get the same table, built once", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const service: Service = {
    ...web(),
    externalIPs: ["192.168.100.200"],
    ports: [{ name: "", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 }],
  };
  const report = new LbReconciler(maps, NODE).sync(snap(service, eps(4)));
  assert.ok(report.operations > 0);
  const tables = [...maps.maglev].map(([, v]) => v.backend_id);
  assert.equal(tables.length, 3, "ClusterIP, externalIP and NodePort");
  assert.deepEqual(tables[1], tables[0]);
  assert.deepEqual(tables[2], tables[0]);
  assert.equal(new Set(tables[0]).size, 4);
});

Deno.test("a build with another SKIFF_MAGLEV_M gets tables of that size", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  new LbReconciler(maps, NODE).sync(snap(web(), eps(3)));
  const table = maps.maglev.get([...maps.revNat.keys()][0])!.backend_id;
  assert.equal(table.length, 251);
  assert.equal(new Set(table).size, 3);
  assert.throws(() => LbMaps.open(obj.maps), /lb_maglev|value/);
});

Deno.test("Maglev moves at most 1.5/N of the buckets when one of N backends goes", async () => {
  await using obj = await loadForTest("tc_lb");
  using maps = LbMaps.open(obj.maps);
  const r = new LbReconciler(maps, NODE);
  const n = 10;
  r.sync(snap(web(), eps(n)));
  const revNatId = [...maps.revNat.keys()][0];
  const before = maps.maglev.get(revNatId)!.backend_id;
  const removedId = [...maps.backends.entries()].find(([, b]) => b.addr === "10.244.1.4")![0];
  r.sync(snap(web(), eps(n).filter((e) => e.ip !== "10.244.1.4")));
  const after = maps.maglev.get(revNatId)!.backend_id;
  let moved = 0;
  let movedKept = 0;
  for (let i = 0; i < MAGLEV_M; i++) {
    if (before[i] !== after[i]) {
      moved++;
      if (before[i] !== removedId) movedKept++;
    }
  }
  assert.ok(!after.includes(removedId), "the removed backend is gone from the table");
  assert.ok(moved / MAGLEV_M <= 1.5 / n, `moved ${moved} of ${MAGLEV_M}`);
  assert.ok(movedKept / MAGLEV_M <= 0.5 / n, `${movedKept} buckets of kept backends moved`);
});

Deno.test("removing a backend purges its UDP flows and affinity, keeps its TCP flows", async () => {
  await using obj = await loadForTest("tc_lb");
  using maps = LbMaps.open(obj.maps);
  const r = new LbReconciler(maps, NODE);
  const both: ServiceSnapshot = {
    services: [
      { service: web("UDP", true), endpoints: eps(2) },
      {
        service: { ...web("TCP"), name: "web-tcp", clusterIPs: ["10.96.0.11"] },
        endpoints: eps(2),
      },
    ],
  };
  r.sync(both);
  const idOf = (ip: string, proto: number) =>
    [...maps.backends.entries()].find(([, b]) => b.addr === ip && b.proto === proto)![0];
  const udpGone = idOf("10.244.1.2", IPPROTO.UDP);
  const tcpGone = idOf("10.244.1.2", IPPROTO.TCP);
  const udpKept = idOf("10.244.1.1", IPPROTO.UDP);
  const revNatUdp = [...maps.revNat.entries()].find(([, v]) => v.proto === IPPROTO.UDP)![0];
  const flow = (sport: number, proto: number, backend: number) => {
    const key = {
      saddr: "192.168.100.250",
      daddr: "10.96.0.10",
      sport,
      dport: 80,
      proto,
      dir: Ct.FWD,
    };
    maps.ct.set(key, {
      nat_saddr: "0.0.0.0",
      nat_daddr: "10.244.1.2",
      nat_sport: 0,
      nat_dport: 8080,
      backend_id: backend,
      rev_nat_id: 1,
      state: Ct.OPEN,
      flags: 0,
      last_seen: 1n,
    });
    return key;
  };
  const udpFlow = flow(1000, IPPROTO.UDP, udpGone);
  const udpOther = flow(1001, IPPROTO.UDP, udpKept);
  const tcpFlow = flow(1002, IPPROTO.TCP, tcpGone);
  const aff = (client: bigint, backend: number) => {
    const key = { client_id: client, rev_nat_id: revNatUdp, kind: 1 };
    maps.affinity.set(key, { last_used: 1n, backend_id: backend });
    return key;
  };
  const affGone = aff(7n, udpGone);
  const affKept = aff(8n, udpKept);

  const report = r.sync({
    services: both.services.map((e) => ({ ...e, endpoints: eps(1) })),
  });
  assert.equal(report.purged, 2);
  assert.deepEqual(
    report.removedBackends.map((b) => `${b.addr}:${b.port}/${b.proto}`).sort(),
    ["10.244.1.2:8080/17", "10.244.1.2:8080/6"],
    "the report names the removed backends (for the socket purge)",
  );
  assert.equal(maps.ct.get(udpFlow), undefined, "UDP flow of the removed backend is purged");
  assert.ok(maps.ct.get(udpOther), "other UDP flows stay");
  assert.ok(maps.ct.get(tcpFlow), "TCP flows of the removed backend finish on their own");
  assert.equal(maps.affinity.get(affGone), undefined);
  assert.ok(maps.affinity.get(affKept));
});

Deno.test("every slot names a live backend and removing the Service removes all its entries", async () => {
  await using obj = await loadForTest("tc_lb");
  using maps = LbMaps.open(obj.maps);
  const r = new LbReconciler(maps, NODE);
  r.sync(snap(web(), eps(3)));
  const front = maps.services.get({ vip: "10.96.0.10", dport: 80, proto: 6, slot: 0 })!;
  assert.equal(front.count, 3);
  for (let slot = 1; slot <= 3; slot++) {
    const v = maps.services.get({ vip: "10.96.0.10", dport: 80, proto: 6, slot })!;
    assert.ok(maps.backends.get(v.backend_id), `slot ${slot} names a live backend`);
  }
  const report = r.sync({ services: [] });
  assert.equal(report.changedServices, 1);
  assert.equal(maps.services.count() + maps.backends.count() + maps.revNat.count(), 0);
  assert.equal(maps.maglev.count(), 0);
});

Deno.test("incremental syncs leave the maps exactly as a full sync from scratch would", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const live = new LbReconciler(maps, NODE);
  // a small deterministic PRNG, so a failure replays
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const services = new Map<number, { service: Service; endpoints: Endpoint[] }>();
  const endpoint = (): Endpoint => {
    const terminating = rnd(5) === 0;
    return {
      ip: `10.244.${1 + rnd(2)}.${1 + rnd(12)}`, // few addresses: Services share backends
      node: rnd(2) ? "n1" : "n2",
      ready: !terminating,
      serving: true,
      terminating,
    };
  };
  const dedupe = (eps: Endpoint[]) => [...new Map(eps.map((e) => [e.ip, e])).values()];
  for (let step = 0; step < 40; step++) {
    const i = rnd(8);
    const action = rnd(4);
    if (action === 0 || !services.has(i)) {
      services.set(i, {
        service: {
          ...web(rnd(2) ? "TCP" : "UDP", rnd(2) === 0),
          name: `s${i}`,
          clusterIPs: [`10.96.0.${i + 1}`],
          externalTrafficPolicy: rnd(2) ? "Local" : "Cluster",
          ports: [{
            name: "",
            protocol: "TCP",
            port: 80,
            targetPort: 8080 + rnd(2),
            nodePort: rnd(2) ? 30000 + i : undefined,
          }],
        },
        endpoints: dedupe(Array.from({ length: rnd(5) }, endpoint)),
      });
    } else if (action === 1) {
      services.delete(i);
    } else {
      const s = services.get(i)!;
      const eps = [...s.endpoints];
      if (eps.length && rnd(2)) eps.splice(rnd(eps.length), 1);
      else eps.push(endpoint());
      services.set(i, { ...s, endpoints: dedupe(eps) });
    }
    const snapshot = { services: [...services.values()] };
    live.sync(snapshot);
    const fresh = new LbReconciler(maps, NODE).sync(snapshot);
    assert.equal(fresh.operations, 0, `step ${step}: the incremental sync left a difference`);
  }
});

Deno.test("sameData() compares plain data deeply, ignoring undefined fields", () => {
  assert.ok(sameData({ a: [1, { b: "x" }], c: undefined }, { a: [1, { b: "x" }] }));
  assert.ok(!sameData({ a: [1, { b: "x" }] }, { a: [1, { b: "y" }] }));
  assert.ok(!sameData({ a: [1] }, { a: [1, 2] }));
  assert.ok(!sameData({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!sameData([1], { 0: 1 }));
  assert.ok(!sameData(null, {}));
});

Deno.test("an id freed by one sync is the lowest free one for the next", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const r = new LbReconciler(maps, NODE);
  const idOf = (ip: string) => [...maps.backends].find(([, b]) => b.addr === ip)?.[0];
  r.sync(snap(web(), eps(4)));
  const freed = idOf("10.244.1.2")!;
  const four = [...eps(4)];
  r.sync(snap(web(), [four[0], four[2], four[3]]));
  r.sync(snap(web(), [four[0], four[2], four[3], eps(1, 9)[0]]));
  assert.equal(idOf("10.244.1.9"), freed);
  r.sync(snap(web(), [four[0], four[2], four[3], eps(1, 9)[0], eps(1, 10)[0]]));
  assert.equal(idOf("10.244.1.10"), 5, "the next new one takes the lowest id never used");
});

Deno.test("a backend two Services share is terminating if either says so, gone with both", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const r = new LbReconciler(maps, NODE);
  const a = { ...web(), name: "a" };
  const b = { ...web(), name: "b", clusterIPs: ["10.96.0.11"] };
  const ep = eps(1)[0];
  const flags = () => [...maps.backends].map(([, v]) => v.flags);
  r.sync({ services: [{ service: a, endpoints: [ep] }, { service: b, endpoints: [ep] }] });
  assert.equal(maps.backends.count(), 1);
  assert.deepEqual(flags(), [BackendFlag.LOCAL]);
  const ending = { ...ep, ready: false, terminating: true };
  r.sync({ services: [{ service: a, endpoints: [ep] }, { service: b, endpoints: [ending] }] });
  assert.deepEqual(flags(), [BackendFlag.LOCAL | BackendFlag.TERMINATING]);
  r.sync({ services: [{ service: a, endpoints: [ep] }] });
  assert.deepEqual(flags(), [BackendFlag.LOCAL], "b's view went with b");
  r.sync({ services: [{ service: a, endpoints: [] }] });
  assert.equal(maps.backends.count(), 0);
});

Deno.test("samePlanInput() sees a change in every model field and ignores others", () => {
  const full: ServiceEntry = {
    service: {
      ...web("UDP", true),
      externalIPs: ["192.168.100.200"],
      loadBalancerIPs: ["192.168.100.201"],
      ports: [{ name: "dns", protocol: "UDP", port: 53, targetPort: 5353, nodePort: 30053 }],
    },
    endpoints: [{ ...eps(1)[0], ports: { dns: 5354 } }, { ...eps(1, 2)[0], terminating: true }],
  };
  assert.ok(samePlanInput(full, structuredClone(full)));
  assert.ok(samePlanInput(full, { ...structuredClone(full), extra: 1 } as ServiceEntry));
  // every leaf, changed alone in a copy, is a change
  const leaves = (v: unknown, path: (string | number)[] = []): (string | number)[][] =>
    typeof v === "object" && v !== null
      ? Object.entries(v).flatMap(([k, x]) => leaves(x, [...path, Array.isArray(v) ? +k : k]))
      : [path];
  const paths = leaves(full);
  assert.ok(paths.length >= 25, `${paths.length} leaves`);
  for (const path of paths) {
    const copy = structuredClone(full) as unknown as Record<string | number, unknown>;
    let at = copy;
    for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
    const last = path[path.length - 1];
    const v = at[last];
    at[last] = typeof v === "number" ? v + 1 : typeof v === "boolean" ? !v : `${v}x`;
    assert.ok(!samePlanInput(full, copy as unknown as ServiceEntry), path.join("."));
  }
  // a list one longer, or a Service port without its nodePort
  const more = structuredClone(full);
  (more.endpoints as Endpoint[]).push(eps(1, 9)[0]);
  assert.ok(!samePlanInput(full, more));
  const noNodePort = structuredClone(full);
  delete (noNodePort.service.ports[0] as { nodePort?: number }).nodePort;
  assert.ok(!samePlanInput(full, noNodePort));
});

Deno.test("reordered, renamed, added and removed Services converge like a fresh sync", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const entry = (name: string, i: number): ServiceEntry => ({
    service: { ...web(), name, clusterIPs: [`10.96.0.${10 + i}`] },
    endpoints: eps(2, 10 * i + 1),
  });
  const r = new LbReconciler(maps, NODE);
  r.sync({ services: [entry("a", 1), entry("b", 2), entry("c", 3)] });
  const steps: ServiceSnapshot[] = [
    { services: [entry("c", 3), entry("a", 1), entry("b", 2)] }, // reordered
    { services: [entry("c", 3), entry("a", 1), entry("d", 2)] }, // b renamed d, same length
    { services: [entry("a", 1), entry("e", 4)] }, // removed and added
  ];
  for (const step of steps) {
    r.sync(step);
    const state = readLbState(maps);
    assert.equal(new LbReconciler(maps, NODE).sync(step).operations, 0);
    assert.deepEqual(readLbState(maps), state);
  }
  assert.deepEqual(
    [...maps.revNat].map(([, v]) => v.vip).sort(),
    ["10.96.0.11", "10.96.0.14"],
  );
});

Deno.test("a sync that would overflow a map is refused before anything is written", async () => {
  await using obj = await loadForTest("tc_lb", {
    defines: { SKIFF_MAGLEV_M: 251, SKIFF_MAX_BACKENDS: 8 },
  });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const r = new LbReconciler(maps, NODE);
  r.sync(snap(web(), eps(6)));
  // replacing all six needs room for twelve at the peak (make before break)
  assert.throws(() => r.sync(snap(web(), eps(6, 100))), LbCapacityError);
  assert.deepEqual(
    [...maps.backends.entries()].map(([, b]) => b.addr).sort(),
    eps(6).map((e) => e.ip).sort(),
    "the maps still hold the previous state",
  );
  assert.equal(r.sync(snap(web(), eps(6))).operations, 0);
});

Deno.test("an entry changed in place (same object) is still seen as changed", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const r = new LbReconciler(maps, NODE);
  const s = snap(web(), eps(2));
  r.sync(s);
  (s.services[0].endpoints as Endpoint[]).push(eps(1, 50)[0]);
  assert.ok(r.sync(s).operations > 0);
  assert.equal(new LbReconciler(maps, NODE).sync(s).operations, 0);
});

Deno.test("a Service listed twice or a frontend shared by two is refused before any write", async () => {
  await using obj = await loadForTest("tc_lb", { defines: { SKIFF_MAGLEV_M: 251 } });
  using maps = LbMaps.open(obj.maps, { maglevSize: 251 });
  const r = new LbReconciler(maps, NODE);
  r.sync(snap(web(), eps(2)));
  const other = { ...web(), name: "other" };
  assert.throws(
    () =>
      r.sync({
        services: [{ service: web(), endpoints: eps(2) }, { service: other, endpoints: [] }],
      }),
    /duplicate frontend: 10\.96\.0\.10:80\/6/,
  );
  assert.throws(
    () =>
      r.sync({ services: [{ service: web(), endpoints: [] }, { service: web(), endpoints: [] }] }),
    /defined twice/,
  );
  assert.equal(new LbReconciler(maps, NODE).sync(snap(web(), eps(2))).operations, 0);
});
