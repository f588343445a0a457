// comparePeers(): per-lease ok/missing/wrong and stale kernel entries, without a kernel.
import assert from "node:assert/strict";
import { comparePeers } from "./routes.ts";
import type { Lease } from "../../agent/overlay/subnet_store.ts";

const lease = (subnet: string, publicIp: string, vtepMac: string): Lease => ({
  subnet,
  attrs: { publicIp, backendType: "vxlan", vni: 1, vtepMac },
});

const L1 = lease("10.244.1.0/24", "192.168.100.11", "02:00:00:00:00:01");
const L2 = lease("10.244.2.0/24", "192.168.100.12", "02:00:00:00:00:02");
const L3 = lease("10.244.3.0/24", "192.168.100.13", "02:00:00:00:00:03");
const route = (n: number) => ({
  dst: `10.244.${n}.0/24`,
  via: `10.244.${n}.0`,
  dev: "flannel.1",
  onlink: true,
});
const desired = {
  routes: [route(2), route(3)],
  neighs: [
    { ip: "10.244.2.0", mac: L2.attrs.vtepMac },
    { ip: "10.244.3.0", mac: L3.attrs.vtepMac },
  ],
  fdbs: [
    { mac: L2.attrs.vtepMac, dst: L2.attrs.publicIp },
    { mac: L3.attrs.vtepMac, dst: L3.attrs.publicIp },
  ],
};

Deno.test("comparePeers() says ok, missing and wrong per entry, and lists stale ones", () => {
  const actual = {
    routes: [route(2), route(9)],
    neighs: [{ ip: "10.244.2.0", mac: "02:00:00:00:00:99" }, {
      ip: "10.244.3.0",
      mac: L3.attrs.vtepMac,
    }],
    fdbs: [{ mac: L2.attrs.vtepMac, dst: L2.attrs.publicIp }],
  };
  const rows = comparePeers([L1, L2, L3], L1.subnet, desired, actual, []);
  const status = rows.map((r) => [r.subnet, r.route.status, r.neigh.status, r.fdb.status]);
  assert.deepEqual(status, [
    ["10.244.2.0/24", "ok", "wrong", "ok"],
    ["10.244.3.0/24", "missing", "ok", "missing"],
    ["10.244.9.0/24", "stale", "n/a", "n/a"],
  ]);
  assert.equal(rows[0].neigh.have, "10.244.2.0 lladdr 02:00:00:00:00:99");
});

Deno.test("comparePeers() reports a skipped lease with its reason", () => {
  const rows = comparePeers([L1, L2], L1.subnet, { routes: [], neighs: [], fdbs: [] }, {
    routes: [],
    neighs: [],
    fdbs: [],
  }, [{ subnet: L2.subnet, reason: "VNI 7 is not ours" }]);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].skipped, "VNI 7 is not ours");
  assert.equal(rows[0].route.status, "n/a");
});
