/**
 * The pod driver's failure paths: a chain that fails midway is undone (DEL of every plugin,
 * netns and record removed); CHECK reports a Pod whose network was broken behind its back.
 */

import assert from "node:assert/strict";
import { run } from "../../agent/net/exec.ts";
import { writeConflist } from "../../agent/cni/conflist.ts";
import { addPod, checkPod, delPod, listPods } from "../../agent/cni/runtime.ts";
import { createCniNode } from "./cni_node.ts";

Deno.test("a conflist whose second plugin fails leaves no Pod, address or netns behind", async () => {
  await using node = await createCniNode();
  const before = await node.snapshot();
  const list = await writeConflist(node.confFile, {
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
  });
  // a portmap config portmap refuses (conditionsV4 must be a list)
  list.plugins[1].conditionsV4 = "broken";
  await Deno.writeTextFile(node.confFile, JSON.stringify(list));
  const name = `${node.prefix}f1`;
  await assert.rejects(
    () =>
      addPod(name, node.driver, {
        portMappings: [{ hostPort: 9090, containerPort: 80, protocol: "tcp" }],
      }),
    /portmap ADD failed/,
  );
  const after = await node.snapshot();
  assert.deepEqual(after.delegates, []);
  assert.deepEqual(after.allocations, []);
  assert.deepEqual(after.natRules, before.natRules);
  assert.deepEqual(after.links.filter((l) => l.startsWith("veth")), []);
  assert.deepEqual(await listPods(node.driver), []);
  assert.equal((await run(["ip", "netns", "list"])).stdout.includes(name), false);
});

Deno.test("checkPod fails once the Pod's address is gone; delPod still cleans up", async () => {
  await using node = await createCniNode();
  const name = `${node.prefix}k1`;
  const record = await addPod(name, node.driver);
  await checkPod(name, node.driver);
  await run(["ip", "-n", name, "addr", "flush", "dev", "eth0"]);
  await assert.rejects(() => checkPod(name, node.driver), /skiff CHECK failed \(code 102\)/);
  await assert.rejects(() => addPod(name, node.driver), /already exists/);
  assert.equal(await delPod(name, node.driver), true);
  const after = await node.snapshot();
  assert.deepEqual(after.delegates, []);
  assert.deepEqual(after.allocations, []);
  assert.ok(record.containerId.length >= 32);
});
