/**
 * The overlay on a real kernel: three lab nodes, each running startOverlay() for its own netns
 * against one store (embedded, then a real etcd), two veth pods per node.
 * @module
 */
import assert from "node:assert/strict";
import { createLab, type Lab, type LabHost, type LabNode } from "../lab/lab.ts";
import { createLogger } from "../../agent/log.ts";
import { createEmbeddedStore } from "../../agent/overlay/embedded_store.ts";
import { createEtcdStore } from "../../agent/overlay/etcd_store.ts";
import { NetConfigError } from "../../agent/overlay/net_config.ts";
import { type OverlayHandle, startOverlay } from "../../agent/overlay/overlay.ts";
import { parseSubnetEnv, readSubnetEnv } from "../../agent/overlay/subnet_env.ts";
import type { SubnetStore } from "../../agent/overlay/subnet_store.ts";
import { UplinkError } from "../../agent/overlay/uplink.ts";
import { startTestEtcd } from "./etcd_server.ts";
import {
  addPods,
  assertAllPing,
  assertTcpAcrossNodes,
  peerTables,
  type Pod,
  waitUntil,
} from "./overlay_lab.ts";

const NET = { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } };
const log = createLogger({ level: (Deno.env.get("SKIFF_TEST_LOG") as "debug") ?? "error" });

interface World {
  lab: Lab;
  tmp: string;
  overlays: (OverlayHandle | undefined)[];
  open(): Promise<SubnetStore>;
  start(node: LabNode): Promise<OverlayHandle>;
}

function makeWorld(
  lab: Lab,
  tmp: string,
  open: () => Promise<SubnetStore> | SubnetStore,
): World {
  const world: World = {
    lab,
    tmp,
    overlays: [],
    open: async () => await open(),
    async start(node) {
      const h = await startOverlay({
        store: await open(),
        netns: node.nsPath,
        nodeName: node.name,
        uplink: { iface: node.uplink },
        stateDir: `${tmp}/${node.name}/state`,
        subnetEnvPath: `${tmp}/${node.name}/subnet.env`,
        resyncMs: 60_000,
        log,
      });
      world.overlays[node.index - 1] = h;
      return h;
    },
  };
  return world;
}

async function closeAll(world: World): Promise<void> {
  for (const h of world.overlays) await h?.close();
}

/** The scenario both stores go through. */
async function scenario(t: Deno.TestContext, world: World): Promise<Pod[]> {
  const { lab } = world;
  const pods: Pod[] = [];
  await t.step("three nodes lease distinct subnets and program each other", async () => {
    const handles = await Promise.all(lab.nodes.map((n) => world.start(n)));
    await Promise.all(handles.map((h) => h.converged));
    assert.equal(new Set(handles.map((h) => h.subnet)).size, 3);
    for (const [i, node] of lab.nodes.entries()) {
      const h = handles[i];
      const others = handles.filter((o) => o !== h);
      await waitUntil(
        `${node.name} routes`,
        async () => (await peerTables(node)).routes.length === 2,
      );
      const tables = await peerTables(node);
      assert.deepEqual(tables.routes, others.map((o) => o.subnet).sort());
      assert.deepEqual(tables.neighs, others.map((o) => o.subnet.replace("/24", "")).sort());
      assert.deepEqual(tables.fdbs, others.map((o) => o.uplink.ip).sort());
      const link =
        JSON.parse((await node.run(["ip", "-j", "-d", "link", "show", "flannel.1"])).stdout)[0];
      assert.equal(link.mtu, 1450);
      assert.equal(link.linkinfo.info_data.learning, false);
      assert.equal(link.linkinfo.info_data.port, 8472);
      assert.equal(link.address, h.lease.attrs.vtepMac);
      const env = parseSubnetEnv(await Deno.readTextFile(`${world.tmp}/${node.name}/subnet.env`));
      assert.deepEqual(env, {
        network: "10.244.0.0/16",
        subnet: h.subnet,
        mtu: 1450,
        ipMasq: true,
      });
      const text = await Deno.readTextFile(`${world.tmp}/${node.name}/subnet.env`);
      assert.match(text, new RegExp(`FLANNEL_SUBNET=${h.subnet.replace(".0/24", ".1/24")}`));
      pods.push(...await addPods(lab, node, h.subnet));
    }
  });

  await t.step("pods ping every pod on the other nodes and talk TCP", async () => {
    await assertAllPing(pods);
    await assertTcpAcrossNodes(lab, pods);
  });

  await t.step("a restarted agent changes nothing (no flush)", async () => {
    const node = lab.nodes[0];
    const before = world.overlays[0]!;
    await before.close();
    const again = await world.start(node);
    const report = await again.converged;
    assert.equal(again.subnet, before.subnet);
    assert.equal(again.lease.attrs.vtepMac, before.lease.attrs.vtepMac);
    assert.equal(report.operations, 0, "all entries were already right");
  });

  await t.step("stale entries are removed and a deleted device comes back", async () => {
    const [n1, n2] = lab.nodes;
    await n1.run([
      "ip",
      "route",
      "add",
      "10.244.250.0/24",
      "via",
      "10.244.250.0",
      "dev",
      "flannel.1",
      "onlink",
    ]);
    await n1.run([
      "ip",
      "neigh",
      "add",
      "10.244.250.0",
      "lladdr",
      "02:de:ad:00:00:01",
      "dev",
      "flannel.1",
      "nud",
      "permanent",
    ]);
    await n1.run([
      "bridge",
      "fdb",
      "append",
      "02:de:ad:00:00:01",
      "dev",
      "flannel.1",
      "dst",
      "192.168.100.99",
      "self",
      "permanent",
    ]);
    const report = await world.overlays[0]!.syncNow();
    assert.equal(report.operations, 3);
    assert.ok(!(await peerTables(n1)).routes.includes("10.244.250.0/24"));
    const mac = world.overlays[1]!.lease.attrs.vtepMac;
    await n2.run(["ip", "link", "del", "flannel.1"]);
    await world.overlays[1]!.syncNow();
    const link = JSON.parse((await n2.run(["ip", "-j", "link", "show", "flannel.1"])).stdout)[0];
    assert.equal(link.address, mac, "recreated with the same MAC");
    await assertAllPing(pods.filter((p) => p.node !== lab.nodes[2]));
  });

  await t.step("a running agent re-creates its lease when it is deleted under it", async () => {
    const h2 = world.overlays[1]!;
    const store = await world.open();
    await store.releaseLease(h2.subnet);
    await waitUntil(
      "lease re-created",
      async () =>
        (await store.listLeases()).leases.some((l) =>
          l.subnet === h2.subnet && l.attrs.vtepMac === h2.lease.attrs.vtepMac
        ),
    );
    await waitUntil(
      "n1 has n2's route again",
      async () => (await peerTables(lab.nodes[0])).routes.includes(h2.subnet),
    );
  });

  await t.step(
    "a node that leaves is removed elsewhere and returns with subnet and MAC",
    async () => {
      const [n1, n2, n3] = lab.nodes;
      const h3 = world.overlays[2]!;
      const { subnet, lease } = h3;
      await h3.close();
      // The agent stopped and its lease deleted (as `skiff uninstall` or expiry would).
      await (await world.open()).releaseLease(subnet);
      for (const node of [n1, n2]) {
        await waitUntil(`${node.name} drops ${subnet}`, async () => {
          const t = await peerTables(node);
          return !t.routes.includes(subnet) && !t.fdbs.includes(n3.ip) &&
            !t.neighs.includes(subnet.replace("/24", ""));
        });
      }
      const back = await world.start(n3);
      await back.converged;
      assert.equal(back.subnet, subnet);
      assert.equal(back.lease.attrs.vtepMac, lease.attrs.vtepMac);
      for (const node of [n1, n2]) {
        await waitUntil(
          `${node.name} re-adds ${subnet}`,
          async () => (await peerTables(node)).routes.includes(subnet),
        );
      }
      await assertAllPing(pods);
    },
  );
  return pods;
}

Deno.test("overlay lab over the embedded store", async (t) => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using lab = await createLab({ nodes: 3, outside: false });
  const dir = `${tmp}/store`;
  // Each node its own store instance on one dir, as separate agents would have.
  const open = () => createEmbeddedStore({ dir, pollMs: 100 });
  const world = makeWorld(lab, tmp, open);
  try {
    await (await createEmbeddedStore({ dir })).initNetworkConfig(NET);
    await scenario(t, world);
  } finally {
    await closeAll(world);
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("overlay lab over etcd, including etcd going down", async (t) => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using etcd = await startTestEtcd();
  await using lab = await createLab({ nodes: 3, outside: false });
  const open = () => createEtcdStore({ endpoints: [etcd.endpoint], timeoutMs: 1000 });
  const world = makeWorld(lab, tmp, open);
  try {
    await open().initNetworkConfig(NET);
    const pods = await scenario(t, world);

    await t.step("etcd down: pod traffic continues; the agent renews once it is back", async () => {
      await etcd.stop();
      await assertAllPing(pods);
      await assert.rejects(() => world.overlays[0]!.renewNow(), /etcd unreachable/);
      await etcd.start();
      const lease = await world.overlays[0]!.renewNow();
      assert.equal(lease.subnet, world.overlays[0]!.subnet);
      // The watch resumed: a change made after the outage reaches the other nodes.
      const [n1, , n3] = lab.nodes;
      const h3 = world.overlays[2]!;
      await h3.close();
      await (await world.open()).releaseLease(h3.subnet);
      await waitUntil(
        "n1 drops n3 after the outage",
        async () => !(await peerTables(n1)).routes.includes(h3.subnet),
      );
      const back = await world.start(n3);
      await back.converged;
      await waitUntil(
        "n1 re-adds n3",
        async () => (await peerTables(n1)).routes.includes(back.subnet),
      );
      await assertAllPing(pods);
    });
  } finally {
    await closeAll(world);
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("bad network configs and a missing uplink are refused with nothing changed", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  try {
    const cases: [unknown, { iface?: string }, RegExp, ErrorConstructor][] = [
      [
        { Network: "192.168.0.0/16", Backend: { Type: "vxlan" } },
        {},
        /overlaps the uplink eth0's subnet 192.168.100.0\/24/,
        NetConfigError as unknown as ErrorConstructor,
      ],
      [
        { Network: "10.244.0.0/16", Backend: { Type: "vxlan", MTU: 1480 } },
        {},
        /"Backend.MTU": 1480 exceeds uplink eth0 MTU 1500/,
        NetConfigError as unknown as ErrorConstructor,
      ],
      [
        NET,
        { iface: "nosuch0" },
        /uplink interface "nosuch0" is missing/,
        UplinkError as unknown as ErrorConstructor,
      ],
      // Written into the store by hand (initNetworkConfig would refuse them already).
      [
        { raw: { Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 0 } } },
        {},
        /"Backend.VNI": 0 is out of range 1..16777215/,
        NetConfigError as unknown as ErrorConstructor,
      ],
      [
        { raw: { Network: "10.244.0.0/16", SubnetLen: 16, Backend: { Type: "vxlan" } } },
        {},
        /"SubnetLen": \/16 must be longer than the Network prefix \/16/,
        NetConfigError as unknown as ErrorConstructor,
      ],
    ];
    for (const [i, [net, uplink, message, type]] of cases.entries()) {
      const store = await createEmbeddedStore({ dir: `${tmp}/store${i}` });
      const raw = (net as { raw?: unknown }).raw;
      if (raw) await Deno.writeTextFile(`${tmp}/store${i}/config.json`, JSON.stringify(raw));
      else await store.initNetworkConfig(net);
      await assert.rejects(
        () =>
          startOverlay({
            store,
            netns: node.nsPath,
            nodeName: node.name,
            uplink,
            stateDir: `${tmp}/state${i}`,
            subnetEnvPath: `${tmp}/subnet${i}.env`,
            log,
          }),
        (e: Error) => e instanceof type && message.test(e.message),
      );
      assert.equal((await store.listLeases()).leases.length, 0, "no lease taken");
      const links = JSON.parse((await node.run(["ip", "-j", "link", "show"])).stdout);
      assert.deepEqual(links.map((l: { ifname: string }) => l.ifname).sort(), ["eth0", "lo"]);
      await assert.rejects(() => Deno.stat(`${tmp}/subnet${i}.env`), Deno.errors.NotFound);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("ten agents started at once get ten distinct subnets (both stores)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using etcd = await startTestEtcd();
  await using lab = await createLab({ nodes: 1, outside: false });
  // Nine more hosts on the underlay: ten public IPs, ten agents.
  const hosts = [lab.nodes[0] as LabHost];
  for (let i = 2; i <= 10; i++) {
    const host = await lab.addHost(`h${i}`);
    await lab.joinUnderlay(host, 20 + i);
    hosts.push(host);
  }
  try {
    const stores: [string, () => Promise<SubnetStore> | SubnetStore][] = [
      ["embedded", () => createEmbeddedStore({ dir: `${tmp}/store` })],
      ["etcd", () => createEtcdStore({ endpoints: [etcd.endpoint] })],
    ];
    for (const [kind, open] of stores) {
      await (await open()).initNetworkConfig({
        Network: "10.30.0.0/20",
        SubnetLen: 24,
        Backend: { Type: "vxlan" },
      });
      const handles = await Promise.all(hosts.map(async (host) =>
        startOverlay({
          store: await open(),
          netns: host.nsPath,
          nodeName: host.name,
          stateDir: `${tmp}/${kind}/${host.name}`,
          subnetEnvPath: `${tmp}/${kind}/${host.name}/subnet.env`,
          log,
        })
      ));
      try {
        await Promise.all(handles.map((h) => h.converged));
        const subnets = new Set(handles.map((h) => h.subnet));
        assert.equal(subnets.size, 10, `${kind}: ${[...subnets].join(" ")}`);
        const listed = (await (await open()).listLeases()).leases;
        assert.equal(listed.length, 10);
        await waitUntil(
          `${kind}: every agent programs nine peers`,
          async () =>
            (await Promise.all(hosts.map((h) => peerTables(h)))).every((t) =>
              t.routes.length === 9
            ),
        );
      } finally {
        for (const h of handles) await h.uninstall();
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("DirectRouting routes same-subnet peers via their public IP, no VXLAN entries", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using lab = await createLab({ nodes: 2, outside: false });
  const handles: OverlayHandle[] = [];
  try {
    const open = () => createEmbeddedStore({ dir: `${tmp}/store`, pollMs: 100 });
    await (await open()).initNetworkConfig({
      Network: "10.244.0.0/16",
      Backend: { Type: "vxlan", DirectRouting: true },
    });
    for (const node of lab.nodes) {
      handles.push(
        await startOverlay({
          store: await open(),
          netns: node.nsPath,
          nodeName: node.name,
          stateDir: `${tmp}/${node.name}`,
          subnetEnvPath: `${tmp}/${node.name}/subnet.env`,
          log,
        }),
      );
    }
    const [n1, n2] = lab.nodes;
    await waitUntil("direct route on n1", async () => {
      const routes = JSON.parse(
        (await n1.run(["ip", "-j", "route", "show", handles[1].subnet])).stdout,
      );
      return routes[0]?.gateway === n2.ip && routes[0]?.dev === "eth0";
    });
    assert.deepEqual(await peerTables(n1), { routes: [], neighs: [], fdbs: [] });
    const pods = [
      ...await addPods(lab, n1, handles[0].subnet, 1),
      ...await addPods(lab, n2, handles[1].subnet, 1),
    ];
    await waitUntil(
      "direct route on n2",
      async () =>
        JSON.parse((await n2.run(["ip", "-j", "route", "show", handles[0].subnet])).stdout)
          .length === 1,
    );
    await assertAllPing(pods);
  } finally {
    for (const h of handles) await h.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the agent renews its lease before it expires", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  const store = await createEmbeddedStore({ dir: `${tmp}/store`, ttlMs: 1500, pollMs: 100 });
  await store.initNetworkConfig(NET);
  const h = await startOverlay({
    store,
    netns: node.nsPath,
    nodeName: node.name,
    stateDir: `${tmp}/state`,
    subnetEnvPath: `${tmp}/subnet.env`,
    log,
  });
  try {
    const first = h.lease.expiresAt!;
    const { cursor } = await store.listLeases();
    await new Promise((r) => setTimeout(r, 4000)); // well past one TTL
    assert.ok(h.lease.expiresAt! > first + 2000, "renewed more than once");
    const { leases } = await store.listLeases();
    assert.deepEqual(leases.map((l) => l.subnet), [h.subnet]);
    // Never expired in between: no "removed" event since the start.
    const ac = new AbortController();
    const it = store.watchLeases(cursor, ac.signal)[Symbol.asyncIterator]();
    const next = await Promise.race([
      it.next(),
      new Promise((r) => setTimeout(() => r("quiet"), 500)),
    ]);
    ac.abort();
    await it.return?.();
    assert.equal(next, "quiet", `unexpected events: ${JSON.stringify(next)}`);
  } finally {
    await h.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("an incompatible flannel.1 is recreated and a stale cni0 address replaced", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  // Left over from another setup: wrong port, learning on; cni0 with another node's gateway.
  await node.run([
    "ip",
    "link",
    "add",
    "flannel.1",
    "type",
    "vxlan",
    "id",
    "1",
    "dstport",
    "4789",
    "dev",
    "eth0",
  ]);
  await node.run(["ip", "link", "add", "cni0", "type", "bridge"]);
  await node.run(["ip", "addr", "add", "10.9.9.1/24", "dev", "cni0"]);
  const store = await createEmbeddedStore({ dir: `${tmp}/store` });
  await store.initNetworkConfig(NET);
  const h = await startOverlay({
    store,
    netns: node.nsPath,
    nodeName: node.name,
    stateDir: `${tmp}/state`,
    subnetEnvPath: `${tmp}/subnet.env`,
    log,
  });
  try {
    const link =
      JSON.parse((await node.run(["ip", "-j", "-d", "link", "show", "flannel.1"])).stdout)[0];
    assert.equal(link.linkinfo.info_data.port, 8472);
    assert.equal(link.linkinfo.info_data.learning, false);
    assert.equal(link.linkinfo.info_data.local, node.ip);
    const addrs = JSON.parse((await node.run(["ip", "-j", "-4", "addr", "show", "cni0"])).stdout)[0]
      .addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`);
    assert.deepEqual(addrs, [h.subnet.replace(".0/24", ".1/24")]);
  } finally {
    await h.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a lease taken by another node is re-acquired and the node reconfigured", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-overlay-" });
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  const store = await createEmbeddedStore({ dir: `${tmp}/store`, pollMs: 100 });
  await store.initNetworkConfig(NET);
  const h = await startOverlay({
    store,
    netns: node.nsPath,
    nodeName: node.name,
    stateDir: `${tmp}/state`,
    subnetEnvPath: `${tmp}/subnet.env`,
    log,
  });
  try {
    const before = h.subnet;
    // Another node grabs our subnet while our lease is gone (e.g. it expired during an outage).
    const other = await createEmbeddedStore({ dir: `${tmp}/store` });
    await other.releaseLease(before);
    await other.acquireLease(
      { publicIp: "192.168.100.99", backendType: "vxlan", vni: 1, vtepMac: "02:00:00:00:00:99" },
      { previousSubnet: before },
    );
    await waitUntil("reconfigured to a new subnet", async () => {
      const env = await readSubnetEnv(`${tmp}/subnet.env`);
      return h.subnet !== before && env?.subnet === h.subnet;
    });
    await h.syncNow();
    const addr = (name: string) =>
      node.run(["ip", "-j", "-4", "addr", "show", name]).then((o) =>
        JSON.parse(o.stdout)[0].addr_info.map((a: { local: string }) => a.local)
      );
    assert.deepEqual(await addr("flannel.1"), [h.subnet.replace("/24", "")]);
    assert.deepEqual(await addr("cni0"), [h.subnet.replace(".0/24", ".1")]);
    // The other node's lease (our old subnet) is now a peer.
    assert.deepEqual((await peerTables(node)).routes, [before]);
  } finally {
    await h.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
