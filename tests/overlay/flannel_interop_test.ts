/**
 * Wire compatibility with real flannel: one lab node runs flanneld (v0.28.10 built from the Go
 * module proxy by scripts/build_flanneld.sh; etcd subnet manager, vxlan backend), two run skiff,
 * all against one etcd. Pods on all three reach each other, and each side programs the other's
 * lease. Skipped (with the reason printed) when flanneld could not be built.
 *
 * etcd listens on the root namespace's loopback; flanneld, inside its node netns, reaches it
 * through a unix socket (not network-namespaced) bridged by two socat relays, so no traffic
 * crosses from the root namespace to a lab address.
 * @module
 */
import assert from "node:assert/strict";
import { createLab } from "../lab/lab.ts";
import { createLogger } from "../../agent/log.ts";
import { createEtcdStore } from "../../agent/overlay/etcd_store.ts";
import { startOverlay } from "../../agent/overlay/overlay.ts";
import type { OverlayHandle } from "../../agent/overlay/overlay.ts";
import { readSubnetEnv } from "../../agent/overlay/subnet_env.ts";
import { startTestEtcd } from "./etcd_server.ts";
import {
  addPods,
  assertAllPing,
  assertTcpAcrossNodes,
  peerTables,
  type Pod,
  waitUntil,
} from "./overlay_lab.ts";

const FLANNELD = new URL("../../build/flannel/bin/flanneld", import.meta.url).pathname;

async function flanneldBuilt(): Promise<boolean> {
  try {
    await Deno.stat(FLANNELD);
    return true;
  } catch {
    const out = await new Deno.Command("bash", {
      args: [new URL("../../scripts/build_flanneld.sh", import.meta.url).pathname],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.code !== 0) {
      console.error(`flanneld not built: ${new TextDecoder().decode(out.stderr).slice(-800)}`);
      return false;
    }
    return true;
  }
}

Deno.test({
  name: "flanneld and skiff nodes share one etcd and reach each other's pods",
  ignore: !(await flanneldBuilt()),
  async fn() {
    const log = createLogger({ level: (Deno.env.get("SKIFF_TEST_LOG") as "debug") ?? "error" });
    const tmp = await Deno.makeTempDir({ prefix: "skiff-flannel-" });
    await using etcd = await startTestEtcd();
    await using lab = await createLab({ nodes: 3, outside: false });
    const sock = `${tmp}/etcd.sock`;
    const rootRelay = new Deno.Command("socat", {
      args: [`UNIX-LISTEN:${sock},fork`, `TCP:127.0.0.1:${etcd.clientPort}`],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const overlays: OverlayHandle[] = [];
    let flanneld: Deno.ChildProcess | undefined;
    try {
      const open = () => createEtcdStore({ endpoints: [etcd.endpoint], timeoutMs: 2000 });
      await open().initNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
      const [fl, s2, s3] = lab.nodes;
      await waitUntil("root relay socket", async () => {
        try {
          await Deno.stat(sock);
          return true;
        } catch {
          return false;
        }
      });
      lab.spawn(fl, [
        "socat",
        "TCP-LISTEN:2379,bind=127.0.0.1,reuseaddr,fork",
        `UNIX-CONNECT:${sock}`,
      ]);
      const flEnv = `${tmp}/flannel/subnet.env`;
      flanneld = lab.spawn(fl, [
        FLANNELD,
        "--etcd-endpoints=http://127.0.0.1:2379",
        "--iface=eth0",
        `--subnet-file=${flEnv}`,
        "--ip-masq=false",
        "--v=1",
      ]);
      const stderr: string[] = [];
      (async () => {
        for await (const chunk of flanneld.stderr.pipeThrough(new TextDecoderStream())) {
          stderr.push(chunk);
        }
      })().catch(() => {});
      try {
        await waitUntil(
          "flanneld's subnet.env",
          async () => (await readSubnetEnv(flEnv)) !== undefined,
          20_000,
        );
      } catch (error) {
        throw new Error(`${(error as Error).message}\nflanneld: ${stderr.join("").slice(-3000)}`);
      }
      const flSubnet = (await readSubnetEnv(flEnv))!.subnet;

      for (const node of [s2, s3]) {
        overlays.push(
          await startOverlay({
            store: open(),
            netns: node.nsPath,
            nodeName: node.name,
            uplink: { iface: "eth0" },
            stateDir: `${tmp}/${node.name}/state`,
            subnetEnvPath: `${tmp}/${node.name}/subnet.env`,
            log,
          }),
        );
      }
      await Promise.all(overlays.map((o) => o.converged));

      // flanneld's lease as skiff reads it, and its device.
      const { leases } = await open().listLeases();
      const flLease = leases.find((l) => l.subnet === flSubnet);
      assert.ok(flLease, `flanneld's lease ${flSubnet} in ${leases.map((l) => l.subnet)}`);
      const flLink =
        JSON.parse((await fl.run(["ip", "-j", "link", "show", "flannel.1"])).stdout)[0];
      assert.equal(flLease.attrs.vtepMac, flLink.address);
      assert.equal(flLease.attrs.publicIp, fl.ip);

      // Each side programs the other: flanneld has routes to both skiff subnets…
      const skiffSubnets = overlays.map((o) => o.subnet).sort();
      await waitUntil("flanneld programs skiff's leases", async () => {
        const t = await peerTables(fl);
        return skiffSubnets.every((s) => t.routes.includes(s));
      }, 15_000);
      // …and skiff nodes have flanneld's.
      for (const node of [s2, s3]) {
        await waitUntil(
          `${node.name} programs flanneld's lease`,
          async () => (await peerTables(node)).routes.includes(flSubnet),
        );
      }

      // flanneld does not make cni0 (its CNI plugin does): a bridge like it, by hand.
      const gw = flSubnet.replace(".0/24", ".1/24");
      await fl.run(["ip", "link", "add", "cni0", "mtu", "1450", "type", "bridge"]);
      await fl.run(["ip", "addr", "add", gw, "dev", "cni0"]);
      await fl.run(["ip", "link", "set", "cni0", "up"]);
      const pods: Pod[] = [
        ...await addPods(lab, fl, flSubnet),
        ...await addPods(lab, s2, overlays[0].subnet),
        ...await addPods(lab, s3, overlays[1].subnet),
      ];
      await assertAllPing(pods);
      await assertTcpAcrossNodes(lab, pods);

      // A skiff node leaves (agent stopped, lease deleted): flanneld drops its entries.
      const leaving = overlays.pop()!;
      await leaving.close();
      await open().releaseLease(leaving.subnet);
      await waitUntil("flanneld drops the leaving skiff node", async () => {
        const t = await peerTables(fl);
        return !t.routes.includes(leaving.subnet) && !t.fdbs.includes(s3.ip);
      }, 15_000);
      const back = await startOverlay({
        store: open(),
        netns: s3.nsPath,
        nodeName: s3.name,
        uplink: { iface: "eth0" },
        stateDir: `${tmp}/${s3.name}/state`,
        subnetEnvPath: `${tmp}/${s3.name}/subnet.env`,
        log,
      });
      overlays.push(back);
      assert.equal(back.subnet, leaving.subnet);
      await waitUntil(
        "flanneld re-adds it",
        async () => (await peerTables(fl)).routes.includes(back.subnet),
        15_000,
      );

      // Migration: flanneld stops and skiff takes over its node, reading flanneld's subnet.env
      // and keeping its device: same subnet, same MAC, so no peer has anything to change.
      flanneld.kill("SIGKILL");
      await flanneld.status;
      const takeover = await startOverlay({
        store: open(),
        netns: fl.nsPath,
        nodeName: fl.name,
        uplink: { iface: "eth0" },
        stateDir: `${tmp}/${fl.name}/state`,
        subnetEnvPath: flEnv,
        log,
      });
      overlays.push(takeover);
      await takeover.converged;
      assert.equal(takeover.subnet, flSubnet);
      assert.equal(takeover.lease.attrs.vtepMac, flLink.address);
      const after = JSON.parse((await fl.run(["ip", "-j", "link", "show", "flannel.1"])).stdout)[0];
      assert.equal(after.ifindex, flLink.ifindex, "flanneld's device was kept, not recreated");
      await assertAllPing(pods);
    } finally {
      for (const o of overlays) await o.close();
      try {
        flanneld?.kill("SIGKILL");
      } catch { /* gone */ }
      try {
        rootRelay.kill("SIGKILL");
      } catch { /* gone */ }
      await rootRelay.status;
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
