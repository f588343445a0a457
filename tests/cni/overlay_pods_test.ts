/**
 * Pods made through skiff's CNI chain (`skiff pod add` on each node) on three lab nodes reach
 * each other over the overlay (startOverlay: VXLAN, cni0, subnet.env per node).
 */

import assert from "node:assert/strict";
import { createLab } from "../lab/lab.ts";
import { createLogger } from "../../agent/log.ts";
import { createEmbeddedStore } from "../../agent/overlay/embedded_store.ts";
import { type OverlayHandle, startOverlay } from "../../agent/overlay/overlay.ts";
import { addPod, delPod, type PodRecord } from "../../agent/cni/runtime.ts";
import { type CniNode, createCniNode } from "./cni_node.ts";

Deno.test("skiff Pods on three lab nodes reach each other over the overlay", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "skiff-cni-overlay-" });
  await using lab = await createLab({ nodes: 3, outside: false });
  const overlays: OverlayHandle[] = [];
  const nodes: CniNode[] = [];
  const log = createLogger({ level: "error" });
  try {
    await (await createEmbeddedStore({ dir: `${tmp}/store` })).initNetworkConfig({
      Network: "10.244.0.0/16",
      Backend: { Type: "vxlan" },
    });
    for (const labNode of lab.nodes) {
      const subnetFile = `${tmp}/${labNode.name}/subnet.env`;
      const overlay = await startOverlay({
        store: await createEmbeddedStore({ dir: `${tmp}/store`, pollMs: 100 }),
        netns: labNode.nsPath,
        nodeName: labNode.name,
        uplink: { iface: labNode.uplink },
        stateDir: `${tmp}/${labNode.name}/state`,
        subnetEnvPath: subnetFile,
        resyncMs: 60_000,
        log,
      });
      overlays.push(overlay);
      await overlay.converged;
      nodes.push(
        await createCniNode({
          subnetFile,
          podPrefix: `q${labNode.index}`,
          onNode: { name: labNode.name, nsPath: labNode.nsPath, prefix: lab.prefix },
        }),
      );
    }
    const pods: PodRecord[] = [];
    for (const [i, node] of nodes.entries()) {
      pods.push(await addPod(`${lab.prefix}q${i + 1}`, node.driver));
    }
    const ips = pods.map((p) => p.result!.ips![0].address.split("/")[0]);
    for (const [i, ip] of ips.entries()) {
      assert.ok(ip.startsWith(overlays[i].subnet.split(".").slice(0, 3).join(".")), ip);
    }
    const failures: string[] = [];
    for (const [i, from] of pods.entries()) {
      for (const [j, to] of ips.entries()) {
        if (i === j) continue;
        let ok = false;
        for (let attempt = 0; attempt < 10 && !ok; attempt++) {
          const out = await new Deno.Command("nsenter", {
            args: [`--net=${from.netns}`, "--", "ping", "-c", "1", "-W", "1", "-q", to],
            stdout: "null",
            stderr: "null",
          }).output();
          ok = out.code === 0;
        }
        if (!ok) failures.push(`${ips[i]}→${to}`);
      }
    }
    assert.deepEqual(failures, []);
    for (const [i, node] of nodes.entries()) {
      assert.equal(await delPod(pods[i].name, node.driver), true);
      assert.deepEqual((await node.snapshot()).allocations, []);
    }
  } finally {
    for (const n of nodes) await n[Symbol.asyncDispose]();
    for (const o of overlays) await o.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
