/**
 * Many Pods on one node through the runtime driver (skiff via the agent socket + portmap): 100 concurrent
 * ADDs get 100 distinct addresses; DEL of all leaves no address, veth, delegate file or portmap
 * rule; DEL twice and DEL of an unknown container succeed. GC removes stale attachments.
 */

import assert from "node:assert/strict";
import { run } from "../../agent/net/exec.ts";
import { addPod, delPod, listPods } from "../../agent/cni/runtime.ts";
import { createCniNode } from "./cni_node.ts";

Deno.test("100 concurrent ADDs get 100 distinct IPs and DEL of all leaves nothing", async () => {
  await using node = await createCniNode({ ipMasq: false });
  const before = await node.snapshot();
  // through the agent's socket (as on a node with the agent up): 100 requests at once on it
  await node.startServer();
  const names = Array.from({ length: 100 }, (_, i) => `${node.prefix}c${i}`);
  const records = await Promise.all(names.map((name, i) =>
    addPod(name, node.driver, {
      portMappings: [{ hostPort: 20000 + i, containerPort: 80, protocol: "tcp" }],
    })
  ));
  const ips = records.map((r) => r.result!.ips![0].address);
  assert.equal(new Set(ips).size, 100, "distinct addresses");
  for (const ip of ips) assert.match(ip, /^10\.244\.1\.\d+\/24$/);
  const mid = await node.snapshot();
  assert.equal(mid.delegates.length, 100);
  assert.equal(mid.allocations.length, 100);
  assert.equal(mid.links.filter((l) => l.startsWith("veth")).length, 100);
  assert.equal(mid.natRules.filter((l) => l.startsWith("-A CNI-DN-")).length, 100 * 3);
  assert.equal((await listPods(node.driver)).length, 100);

  const deleted = await Promise.all(names.map((name) => delPod(name, node.driver)));
  assert.deepEqual(deleted, names.map(() => true));
  const after = await node.snapshot();
  assert.deepEqual(after.delegates, []);
  assert.deepEqual(after.allocations, []);
  assert.deepEqual(after.links, ["cni0", "lo"]);
  assert.deepEqual(after.natRules, before.natRules);
  const leftNs = (await run(["ip", "netns", "list"])).stdout.split("\n")
    .filter((l) => l.startsWith(`${node.prefix}c`));
  assert.deepEqual(leftNs, []);
  assert.deepEqual(await listPods(node.driver), []);

  // DEL twice (driver and plugin level) and DEL of a container never added: success
  assert.equal(await delPod(names[0], node.driver), false);
  for (const id of [records[0].containerId, "never-added-container"]) {
    const out = await node.plugin(
      {
        CNI_COMMAND: "DEL",
        CNI_CONTAINERID: id,
        CNI_NETNS: `/run/netns/${names[0]}`,
        CNI_IFNAME: "eth0",
        CNI_PATH: node.binDir,
      },
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "skiff",
        type: "skiff",
        subnetFile: node.subnetFile,
        dataDir: node.dataDir,
        ipamDataDir: node.ipamDataDir,
      }),
    );
    assert.equal(out.code, 0, out.stdout);
    assert.equal(out.stdout.trim(), "");
  }
});

Deno.test("GC removes saved delegates that are not valid attachments, keeps the others", async () => {
  await using node = await createCniNode();
  const before = await node.snapshot();
  const conf = {
    cniVersion: "1.1.0",
    name: "skiff",
    type: "skiff",
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
  };
  const ids = ["gc0", "gc1", "gc2"];
  for (const id of ids) {
    const netns = await node.addNetns(id);
    const out = await node.plugin({
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: "eth0",
      CNI_PATH: node.binDir,
    }, JSON.stringify(conf));
    assert.equal(out.code, 0, out.stdout);
  }
  const gc = await node.plugin(
    { CNI_COMMAND: "GC", CNI_PATH: node.binDir },
    JSON.stringify({
      ...conf,
      "cni.dev/valid-attachments": [
        { containerID: "gc0", ifname: "eth0" },
        { containerID: "gc1", ifname: "net1" }, // same container, other interface: stale
      ],
    }),
  );
  assert.equal(gc.code, 0, gc.stdout + gc.stderr);
  const after = await node.snapshot();
  assert.deepEqual(after.delegates, ["gc0"]);
  assert.equal(after.allocations.length, 1);
  assert.equal(after.links.filter((l) => l.startsWith("veth")).length, 1);
  // the removed Pods lost their interface; the kept one did not
  const eth0 = async (id: string) =>
    (await run(["ip", "link", "show", "eth0"], {
      netns: `/run/netns/${node.prefix}${id}`,
      allowFailure: true,
    })).code;
  assert.equal(await eth0("gc0"), 0);
  assert.notEqual(await eth0("gc1"), 0);
  assert.notEqual(await eth0("gc2"), 0);
  // GC with an empty list removes the rest
  const gcAll = await node.plugin(
    { CNI_COMMAND: "GC", CNI_PATH: node.binDir },
    JSON.stringify({ ...conf, "cni.dev/valid-attachments": [] }),
  );
  assert.equal(gcAll.code, 0, gcAll.stdout);
  const empty = await node.snapshot();
  assert.deepEqual(empty.delegates, []);
  assert.deepEqual(empty.allocations, []);
  assert.deepEqual(empty.natRules, before.natRules);
});
