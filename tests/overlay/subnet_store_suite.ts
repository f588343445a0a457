/**
 * The one SubnetStore suite, run against every implementation (embedded_store_test.ts,
 * etcd_store_test.ts). A harness gives each case a fresh, empty store namespace.
 * @module
 */
import assert from "node:assert/strict";
import { NetConfigError } from "../../agent/overlay/net_config.ts";
import {
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type LeaseWatchResult,
  StoreError,
  type SubnetStore,
} from "../../agent/overlay/subnet_store.ts";
import { parseCidr } from "../../agent/net/ipv4.ts";

/** A fresh namespace of one store implementation. */
export interface StoreHarness {
  /** A new store instance on this namespace (like another agent or a restarted one). */
  open(options?: { ttlMs?: number }): Promise<SubnetStore>;
  /** Writes a raw lease value under a subnet's key, bypassing the store's checks. */
  writeRaw(subnet: string, value: string): Promise<void>;
  /** Whether a lease key exists at the storage level. */
  rawExists(subnet: string): Promise<boolean>;
}

/** Makes a fresh harness for one case; the suite disposes nothing (the caller owns cleanup). */
export type HarnessFactory = () => Promise<StoreHarness>;

const NET = { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } };

/** attrs of test node `n`. */
export function nodeAttrs(n: number, mac?: string): LeaseAttrs {
  return {
    publicIp: `192.168.100.${10 + n}`,
    backendType: "vxlan",
    vni: 1,
    vtepMac: mac ?? `02:00:00:00:00:${n.toString(16).padStart(2, "0")}`,
  };
}

async function nextResult(
  it: AsyncIterator<LeaseWatchResult>,
  timeoutMs = 5000,
): Promise<LeaseWatchResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no watch result in ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const r = await Promise.race([it.next(), timeout]);
    assert.ok(!r.done, "watch ended");
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

/** Collects events until `count` arrived (snapshots fail the test). */
async function collect(it: AsyncIterator<LeaseWatchResult>, count: number): Promise<LeaseEvent[]> {
  const events: LeaseEvent[] = [];
  while (events.length < count) {
    const r = await nextResult(it);
    assert.equal(r.kind, "events", "expected events, got a snapshot");
    if (r.kind === "events") events.push(...r.events);
  }
  return events;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 8000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Registers the suite's cases as steps of test `t`. */
export async function subnetStoreSuite(t: Deno.TestContext, fresh: HarnessFactory) {
  await t.step(
    "initNetworkConfig stores flannel's config once; bad ones change nothing",
    async () => {
      const h = await fresh();
      const store = await h.open();
      await assert.rejects(() => store.getNetworkConfig(), StoreError);
      await assert.rejects(
        () => store.initNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 16 }),
        NetConfigError,
      );
      await assert.rejects(() => store.getNetworkConfig(), StoreError, "nothing may be stored");
      const config = await store.initNetworkConfig(NET);
      assert.equal(config.subnetLen, 24);
      assert.equal(config.backend.vni, 1);
      const again = await (await h.open()).initNetworkConfig({
        Network: "10.99.0.0/16",
        Backend: { Type: "vxlan" },
      });
      assert.deepEqual(again.network, parseCidr("10.244.0.0/16"), "the first config stays");
    },
  );

  await t.step("acquireLease gives a subnet of the network with a 24 h TTL", async () => {
    const h = await fresh();
    const store = await h.open();
    await store.initNetworkConfig(NET);
    const lease = await store.acquireLease(nodeAttrs(1));
    const cidr = parseCidr(lease.subnet);
    assert.equal(cidr.prefix, 24);
    assert.ok(lease.subnet.startsWith("10.244.") && lease.subnet !== "10.244.0.0/24");
    const ttl = lease.expiresAt! - Date.now();
    assert.ok(ttl > 23.9 * 3600e3 && ttl <= 24 * 3600e3 + 1000, `ttl ${ttl}`);
    const { leases } = await store.listLeases();
    assert.deepEqual(leases.map((l) => [l.subnet, l.attrs]), [[lease.subnet, nodeAttrs(1)]]);
    assert.ok(leases[0].expiresAt! > Date.now() + 23 * 3600e3);
  });

  await t.step("the same node gets the same subnet after a restart, with its new MAC", async () => {
    const h = await fresh();
    await (await h.open()).initNetworkConfig(NET);
    const first = await (await h.open()).acquireLease(nodeAttrs(1));
    const other = await (await h.open()).acquireLease(nodeAttrs(2));
    assert.notEqual(first.subnet, other.subnet);
    const again = await (await h.open()).acquireLease(nodeAttrs(1));
    assert.equal(again.subnet, first.subnet);
    const newMac = await (await h.open()).acquireLease(nodeAttrs(1, "02:aa:bb:cc:dd:ee"));
    assert.equal(newMac.subnet, first.subnet);
    const { leases } = await (await h.open()).listLeases();
    assert.equal(leases.length, 2);
    const mine = leases.find((l) => l.subnet === first.subnet)!;
    assert.equal(mine.attrs.vtepMac, "02:aa:bb:cc:dd:ee");
  });

  await t.step("a previous subnet is taken again when it is free", async () => {
    const h = await fresh();
    const store = await h.open();
    await store.initNetworkConfig(NET);
    const lease = await store.acquireLease(nodeAttrs(3), { previousSubnet: "10.244.77.0/24" });
    assert.equal(lease.subnet, "10.244.77.0/24");
    const out = await store.acquireLease(nodeAttrs(4), { previousSubnet: "10.99.1.0/24" });
    assert.notEqual(out.subnet, "10.99.1.0/24", "a subnet outside the network is ignored");
  });

  await t.step("ten acquisitions at once from ten stores get ten distinct subnets", async () => {
    const h = await fresh();
    // 15 subnets for 10 nodes: random picks collide often, so atomicity is what keeps them apart.
    await (await h.open()).initNetworkConfig({
      Network: "10.50.0.0/20",
      SubnetLen: 24,
      Backend: { Type: "vxlan" },
    });
    const stores = await Promise.all(Array.from({ length: 10 }, () => h.open()));
    const leases = await Promise.all(stores.map((s, i) => s.acquireLease(nodeAttrs(i + 1))));
    const subnets = new Set(leases.map((l) => l.subnet));
    assert.equal(subnets.size, 10, `got ${[...subnets].join(" ")}`);
    const { leases: listed } = await stores[0].listLeases();
    assert.equal(listed.length, 10);
    for (const l of leases) {
      assert.equal(listed.find((x) => x.subnet === l.subnet)?.attrs.publicIp, l.attrs.publicIp);
    }
  });

  await t.step("renewLease extends the expiry; a vanished lease is re-created", async () => {
    const h = await fresh();
    const store = await h.open({ ttlMs: 60_000 });
    await store.initNetworkConfig(NET);
    const lease = await store.acquireLease(nodeAttrs(1));
    await new Promise((r) => setTimeout(r, 1100));
    const renewed = await store.renewLease(lease);
    assert.ok(renewed.expiresAt! > lease.expiresAt!, "expiry moved forward");
    assert.equal(renewed.subnet, lease.subnet);
    await store.releaseLease(lease.subnet);
    const back = await store.renewLease(lease);
    assert.equal(back.subnet, lease.subnet);
    assert.ok(await h.rawExists(lease.subnet));
  });

  await t.step("renewLease refuses a subnet another node holds now", async () => {
    const h = await fresh();
    const store = await h.open();
    await store.initNetworkConfig(NET);
    const lease = await store.acquireLease(nodeAttrs(1), { previousSubnet: "10.244.9.0/24" });
    await store.releaseLease(lease.subnet);
    await store.acquireLease(nodeAttrs(2), { previousSubnet: "10.244.9.0/24" });
    await assert.rejects(() => store.renewLease(lease), /lost.*192\.168\.100\.12 holds it/);
  });

  await t.step("releaseLease removes the lease and is idempotent", async () => {
    const h = await fresh();
    const store = await h.open();
    await store.initNetworkConfig(NET);
    const lease = await store.acquireLease(nodeAttrs(1));
    await store.releaseLease(lease.subnet);
    await store.releaseLease(lease.subnet);
    assert.equal((await store.listLeases()).leases.length, 0);
    assert.equal(await h.rawExists(lease.subnet), false);
  });

  await t.step("watch delivers added, changed, removed; resumes from a cursor", async () => {
    const h = await fresh();
    const watcher = await h.open();
    const other = await h.open();
    await watcher.initNetworkConfig(NET);
    const start = await watcher.listLeases();
    const ac = new AbortController();
    const it = watcher.watchLeases(start.cursor, ac.signal)[Symbol.asyncIterator]();
    try {
      const first = nextResult(it);
      const a = await other.acquireLease(nodeAttrs(1));
      const r1 = await first;
      assert.equal(r1.kind, "events");
      const e1 = r1.kind === "events" ? r1.events : [];
      assert.deepEqual(e1.map((e) => e.type), ["added"]);
      assert.equal(e1[0].type === "added" && e1[0].lease.subnet, a.subnet);
      assert.deepEqual(e1[0].type === "added" && e1[0].lease.attrs, nodeAttrs(1));
      await other.acquireLease(nodeAttrs(1, "02:00:00:00:01:01"));
      const [e2] = await collect(it, 1);
      assert.equal(e2.type, "changed");
      assert.equal(e2.type === "changed" && e2.lease.attrs.vtepMac, "02:00:00:00:01:01");
      await other.releaseLease(a.subnet);
      const [e3] = await collect(it, 1);
      assert.deepEqual(e3, { type: "removed", subnet: a.subnet });
      const cursor = r1.cursor;
      ac.abort();
      await it.return?.();
      // Resume from the first result's cursor: the later changes come again, in order.
      const ac2 = new AbortController();
      const it2 = watcher.watchLeases(cursor, ac2.signal)[Symbol.asyncIterator]();
      try {
        const events = await collect(it2, 2);
        assert.deepEqual(events.map((e) => e.type), ["changed", "removed"]);
      } finally {
        ac2.abort();
        await it2.return?.();
      }
    } finally {
      ac.abort();
      await it.return?.();
    }
  });

  await t.step("an expired lease goes (removed event) and its subnet is free again", async () => {
    const h = await fresh();
    const store = await h.open({ ttlMs: 1000 });
    await store.initNetworkConfig(NET);
    const start = await store.listLeases();
    const ac = new AbortController();
    const it = store.watchLeases(start.cursor, ac.signal)[Symbol.asyncIterator]();
    try {
      const lease = await store.acquireLease(nodeAttrs(1));
      const events = await collect(it, 2);
      assert.deepEqual(events.map((e) => e.type), ["added", "removed"]);
      await waitFor("lease gone", async () => !(await h.rawExists(lease.subnet)));
      const taker = await store.acquireLease(nodeAttrs(2), { previousSubnet: lease.subnet });
      assert.equal(taker.subnet, lease.subnet);
    } finally {
      ac.abort();
      await it.return?.();
    }
  });

  await t.step("a corrupted lease record is skipped with its subnet kept taken", async () => {
    const h = await fresh();
    const store = await h.open();
    await store.initNetworkConfig({ Network: "10.60.0.0/22", Backend: { Type: "vxlan" } });
    // /22 → subnets .1, .2, .3 (/24); .1 and .2 corrupt, so the only free one is .3.
    await h.writeRaw("10.60.1.0/24", "{not json");
    await h.writeRaw("10.60.2.0/24", JSON.stringify({ PublicIP: "x", BackendType: "vxlan" }));
    const start = await store.listLeases();
    assert.equal(start.leases.length, 0);
    const lease = await store.acquireLease(nodeAttrs(1));
    assert.equal(lease.subnet, "10.60.3.0/24");
    await assert.rejects(() => store.acquireLease(nodeAttrs(2)), /no free subnet/);
    const ac = new AbortController();
    const it = store.watchLeases((await store.listLeases()).cursor, ac.signal)[
      Symbol.asyncIterator
    ]();
    try {
      await h.writeRaw("10.60.3.0/24", "garbage");
      const [event] = await collect(it, 1);
      assert.deepEqual(event, { type: "removed", subnet: "10.60.3.0/24" });
    } finally {
      ac.abort();
      await it.return?.();
    }
  });

  await t.step("records are flannel's format", async () => {
    const h = await fresh();
    const store = await h.open();
    await store.initNetworkConfig(NET);
    // A record as flanneld writes it (field order and the null PublicIPv6 included).
    await h.writeRaw(
      "10.244.200.0/24",
      '{"PublicIP":"192.168.100.99","PublicIPv6":null,"BackendType":"vxlan",' +
        '"BackendData":{"VNI":1,"VtepMAC":"AA:BB:CC:00:11:22"}}',
    );
    const { leases } = await store.listLeases();
    const flannel: Lease | undefined = leases.find((l) => l.subnet === "10.244.200.0/24");
    assert.deepEqual(flannel?.attrs, {
      publicIp: "192.168.100.99",
      backendType: "vxlan",
      vni: 1,
      vtepMac: "aa:bb:cc:00:11:22",
    });
  });
}
