/**
 * The overlay on a real kernel: three lab nodes, each running startOverlay() for its own netns
 * against one store (embedded, then a real etcd), two veth pods per node.
 * @module
 */
import assert from "node:assert/strict";
import { createLab, type Lab, type LabNode } from "../lab/lab.ts";
import { createLogger } from "../../agent/log.ts";
import { createEmbeddedStore } from "../../agent/overlay/embedded_store.ts";
import { createEtcdStore } from "../../agent/overlay/etcd_store.ts";
import { NetConfigError } from "../../agent/overlay/net_config.ts";
import { type OverlayHandle, startOverlay } from "../../agent/overlay/overlay.ts";
import { parseSubnetEnv } from "../../agent/overlay/subnet_env.ts";
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
    ];
    for (const [i, [net, uplink, message, type]] of cases.entries()) {
      const store = await createEmbeddedStore({ dir: `${tmp}/store${i}` });
      await store.initNetworkConfig(net);
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
