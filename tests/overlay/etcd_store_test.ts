/**
 * The SubnetStore suite against a real etcd-server (loopback, temp data dir), plus what only
 * etcd has: flannel's exact keys and values, the etcd lease as TTL, a watch that survives etcd
 * going down, compacted history.
 * @module
 */
import assert from "node:assert/strict";
import { EtcdClient } from "../../agent/overlay/etcd_client.ts";
import { createEtcdStore } from "../../agent/overlay/etcd_store.ts";
import { subnetKey } from "../../agent/overlay/subnet_store.ts";
import type { LeaseWatchResult } from "../../agent/overlay/subnet_store.ts";
import { startTestEtcd } from "./etcd_server.ts";
import { nodeAttrs, subnetStoreSuite } from "./subnet_store_suite.ts";

Deno.test("etcd store passes the SubnetStore suite", async (t) => {
  await using etcd = await startTestEtcd();
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  let n = 0;
  await subnetStoreSuite(t, () => {
    const prefix = `/t${n++}/coreos.com/network`;
    return Promise.resolve({
      open: (o = {}) =>
        Promise.resolve(createEtcdStore({ endpoints: [etcd.endpoint], prefix, ttlMs: o.ttlMs })),
      writeRaw: (subnet: string, value: string) =>
        client.put(`${prefix}/subnets/${subnetKey(subnet)}`, value),
      rawExists: async (subnet: string) =>
        (await client.get(`${prefix}/subnets/${subnetKey(subnet)}`)) !== undefined,
    });
  });
});

Deno.test("etcd store writes flannel's keys and values under an etcd lease", async () => {
  await using etcd = await startTestEtcd();
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  const store = createEtcdStore({ endpoints: [etcd.endpoint] });
  await store.initNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
  const config = JSON.parse((await client.get("/coreos.com/network/config"))!.value);
  assert.equal(config.Network, "10.244.0.0/16");
  assert.equal(config.Backend.Type, "vxlan");
  const lease = await store.acquireLease(nodeAttrs(1), { previousSubnet: "10.244.1.0/24" });
  const kv = await client.get("/coreos.com/network/subnets/10.244.1.0-24");
  assert.ok(kv, "key in flannel's layout");
  assert.equal(
    kv.value,
    '{"PublicIP":"192.168.100.11","PublicIPv6":null,"BackendType":"vxlan",' +
      '"BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}}',
  );
  assert.notEqual(kv.lease, "0");
  const ttl = await client.timeToLive(kv.lease);
  assert.ok(ttl > 86000 && ttl <= 86400, `etcd lease TTL ${ttl}`);
  await store.releaseLease(lease.subnet);
  assert.equal(await client.timeToLive(kv.lease), -1, "the etcd lease is revoked too");
});

Deno.test("etcd store: watch resumes after etcd was down; renew reconnects", async () => {
  await using etcd = await startTestEtcd();
  const store = createEtcdStore({ endpoints: [etcd.endpoint], timeoutMs: 1000 });
  const other = createEtcdStore({ endpoints: [etcd.endpoint], timeoutMs: 1000 });
  await store.initNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
  const mine = await store.acquireLease(nodeAttrs(1));
  const { cursor } = await store.listLeases();
  const ac = new AbortController();
  const it = store.watchLeases(cursor, ac.signal)[Symbol.asyncIterator]();
  const next = (ms: number) =>
    Promise.race([
      it.next(),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error("no watch result")), ms)),
    ]);
  try {
    const first = next(5000);
    const a = await other.acquireLease(nodeAttrs(2));
    const r1 = (await first).value as LeaseWatchResult;
    assert.equal(r1.kind === "events" && r1.events[0].type, "added");
    await etcd.stop();
    await assert.rejects(() => store.renewLease(mine), /etcd unreachable/);
    await new Promise((r) => setTimeout(r, 700)); // the watch retries meanwhile
    await etcd.start();
    const renewed = await store.renewLease(mine);
    assert.ok(renewed.expiresAt! >= mine.expiresAt!);
    const pending = next(10_000);
    await other.releaseLease(a.subnet);
    const r2 = (await pending).value as LeaseWatchResult;
    assert.deepEqual(r2.kind === "events" && r2.events, [{ type: "removed", subnet: a.subnet }]);
  } finally {
    ac.abort();
    await it.return?.();
  }
});

Deno.test("etcd store: a cursor behind compaction gets a snapshot", async () => {
  await using etcd = await startTestEtcd();
  const store = createEtcdStore({ endpoints: [etcd.endpoint] });
  await store.initNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
  const { cursor } = await store.listLeases();
  await store.acquireLease(nodeAttrs(1));
  const l2 = await store.acquireLease(nodeAttrs(2));
  await store.releaseLease(l2.subnet);
  const { cursor: now } = await store.listLeases();
  const res = await fetch(`${etcd.endpoint}/v3/kv/compaction`, {
    method: "POST",
    body: JSON.stringify({ revision: now, physical: true }),
  });
  assert.equal(res.status, 200, await res.text());
  const ac = new AbortController();
  const it = store.watchLeases(cursor, ac.signal)[Symbol.asyncIterator]();
  try {
    const r = (await it.next()).value as LeaseWatchResult;
    assert.equal(r.kind, "snapshot");
    assert.deepEqual(r.kind === "snapshot" && r.leases.map((l) => l.attrs.publicIp), [
      "192.168.100.11",
    ]);
  } finally {
    ac.abort();
    await it.return?.();
  }
  assert.equal(subnetKey("10.244.3.0/24"), "10.244.3.0-24");
});

Deno.test("etcd store: a dead endpoint in the list is skipped", async () => {
  await using etcd = await startTestEtcd();
  const dead = await startTestEtcd();
  const deadEndpoint = dead.endpoint;
  await dead[Symbol.asyncDispose](); // a port where nothing listens any more
  const store = createEtcdStore({ endpoints: [deadEndpoint, etcd.endpoint], timeoutMs: 1000 });
  await store.initNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
  const lease = await store.acquireLease(nodeAttrs(1));
  assert.deepEqual((await store.listLeases()).leases.map((l) => l.subnet), [lease.subnet]);
  const none = createEtcdStore({ endpoints: [deadEndpoint], timeoutMs: 1000 });
  await assert.rejects(() => none.getNetworkConfig(), /etcd unreachable at http:\/\/127.0.0.1:\d+/);
});
