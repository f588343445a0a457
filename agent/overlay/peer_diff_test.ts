/** Peer entries: what leases want, the diff against the kernel, and the batch order. */
import assert from "node:assert/strict";
import { parseCidr } from "../net/ipv4.ts";
import {
  desiredEntries,
  diffEntries,
  diffToBatches,
  type PeerContext,
  type PeerEntries,
} from "./peer_diff.ts";
import type { Lease } from "./subnet_store.ts";

const ctx: PeerContext = {
  device: "flannel.1",
  vni: 1,
  ownSubnet: "10.244.1.0/24",
  network: parseCidr("10.244.0.0/16"),
  uplink: { name: "eth0", cidr: parseCidr("192.168.100.0/24"), ip: "192.168.100.11" },
  directRouting: false,
};

const lease = (n: number, ip = `192.168.100.${10 + n}`, vni = 1): Lease => ({
  subnet: `10.244.${n}.0/24`,
  attrs: { publicIp: ip, backendType: "vxlan", vni, vtepMac: `02:00:00:00:00:0${n}` },
});

Deno.test("desiredEntries() gives neighbour, FDB and route per remote lease, not our own", () => {
  const { entries, skipped } = desiredEntries(ctx, [
    lease(3),
    lease(1),
    lease(2),
    lease(4, "1.2.3.4", 7),
    lease(5, "192.168.100.11"),
  ]);
  assert.deepEqual(entries, {
    neighs: [
      { ip: "10.244.2.0", mac: "02:00:00:00:00:02" },
      { ip: "10.244.3.0", mac: "02:00:00:00:00:03" },
    ],
    fdbs: [
      { mac: "02:00:00:00:00:02", dst: "192.168.100.12" },
      { mac: "02:00:00:00:00:03", dst: "192.168.100.13" },
    ],
    routes: [
      { dst: "10.244.2.0/24", via: "10.244.2.0", dev: "flannel.1", onlink: true },
      { dst: "10.244.3.0/24", via: "10.244.3.0", dev: "flannel.1", onlink: true },
    ],
  });
  assert.deepEqual(skipped, [
    { subnet: "10.244.4.0/24", reason: "VNI 7 is not ours" },
    { subnet: "10.244.5.0/24", reason: "its public IP 192.168.100.11 is ours" },
  ]);
});

Deno.test("desiredEntries() routes directly to same-L2 peers with DirectRouting", () => {
  const { entries } = desiredEntries({ ...ctx, directRouting: true }, [
    lease(2),
    lease(3, "172.16.0.3"),
  ]);
  assert.deepEqual(entries.routes, [
    { dst: "10.244.2.0/24", via: "192.168.100.12", dev: "eth0", onlink: false },
    { dst: "10.244.3.0/24", via: "10.244.3.0", dev: "flannel.1", onlink: true },
  ]);
  assert.deepEqual(entries.neighs.map((n) => n.ip), ["10.244.3.0"]);
});

Deno.test("diffEntries() leaves right entries alone, fixes wrong ones, removes stale ones", () => {
  const desired = desiredEntries(ctx, [lease(2), lease(3)]).entries;
  const actual: PeerEntries = {
    neighs: [
      { ip: "10.244.2.0", mac: "02:00:00:00:00:02" }, // right
      { ip: "10.244.3.0", mac: "02:00:00:00:00:99" }, // wrong MAC
      { ip: "10.244.9.0", mac: "02:00:00:00:00:09" }, // stale
    ],
    fdbs: [
      { mac: "02:00:00:00:00:02", dst: "192.168.100.12" },
      { mac: "02:00:00:00:00:03", dst: "192.168.100.99" }, // moved node
      { mac: "02:00:00:00:00:09", dst: "192.168.100.19" },
    ],
    routes: [
      { dst: "10.244.2.0/24", via: "10.244.2.0", dev: "flannel.1", onlink: true },
      { dst: "10.244.9.0/24", via: "10.244.9.0", dev: "flannel.1", onlink: true },
    ],
  };
  const diff = diffEntries(desired, actual);
  assert.deepEqual(diff, {
    routeDel: [{ dst: "10.244.9.0/24", via: "10.244.9.0", dev: "flannel.1", onlink: true }],
    fdbDel: [
      { mac: "02:00:00:00:00:03", dst: "192.168.100.99" },
      { mac: "02:00:00:00:00:09", dst: "192.168.100.19" },
    ],
    neighDel: [{ ip: "10.244.9.0", mac: "02:00:00:00:00:09" }],
    neighSet: [{ ip: "10.244.3.0", mac: "02:00:00:00:00:03" }],
    fdbSet: [{ mac: "02:00:00:00:00:03", dst: "192.168.100.13" }],
    routeSet: [{ dst: "10.244.3.0/24", via: "10.244.3.0", dev: "flannel.1", onlink: true }],
  });
  assert.deepEqual(diffEntries(desired, desired), {
    routeDel: [],
    fdbDel: [],
    neighDel: [],
    neighSet: [],
    fdbSet: [],
    routeSet: [],
  });
});

Deno.test("diffToBatches() orders removal route→FDB→neighbour and addition neighbour→FDB→route", () => {
  const desired = desiredEntries(ctx, [lease(3)]).entries;
  const actual = desiredEntries(ctx, [lease(2)]).entries;
  const batches = diffToBatches(diffEntries(desired, actual), "flannel.1");
  assert.deepEqual(batches, [
    { tool: "ip", lines: ["route del 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"] },
    { tool: "bridge", lines: ["fdb del 02:00:00:00:00:02 dev flannel.1 dst 192.168.100.12 self"] },
    {
      tool: "ip",
      lines: [
        "neigh del 10.244.2.0 dev flannel.1",
        "neigh replace 10.244.3.0 lladdr 02:00:00:00:00:03 dev flannel.1 nud permanent",
      ],
    },
    {
      tool: "bridge",
      lines: ["fdb append 02:00:00:00:00:03 dev flannel.1 dst 192.168.100.13 self permanent"],
    },
    { tool: "ip", lines: ["route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink"] },
  ]);
});
