/**
 * The shim's fast path: with the agent's CNI socket up, the shim forwards requests (no Deno
 * start-up) and the answers are the plugin's own; with the socket gone or stale it runs the
 * plugin itself.
 */

import assert from "node:assert/strict";
import { installPlugin } from "../../agent/cni/install.ts";
import { runPlugin } from "../../agent/cni/plugin.ts";
import { serveCni } from "../../agent/cni/server.ts";
import { run } from "../../agent/net/exec.ts";
import { createCniNode } from "./cni_node.ts";

Deno.test("the shim forwards to the agent socket and falls back when it is gone", async () => {
  await using node = await createCniNode();
  const before = await node.snapshot();
  const netns = await node.addNetns("f1");
  const conf = {
    cniVersion: "1.0.0",
    name: "skiff",
    type: "skiff",
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
  };
  const env = (command: string, extra: Record<string, string> = {}) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: "f1",
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: node.binDir,
    ...extra,
  });
  const stop = await node.startServer();
  // the direct path cannot run while SKIFF_ROOT points nowhere: answers must come from the socket
  Deno.env.set("SKIFF_ROOT", "/nonexistent-skiff-root");
  try {
    const malformed: [Record<string, string>, string][] = [
      [env("ADD"), "{broken"],
      [env("ADD", { CNI_IFNAME: "" }), JSON.stringify(conf)],
      [env("DEL"), JSON.stringify({ ...conf, cniVersion: "9.9.9" })],
      [env("ADD", { CNI_NETNS: "/run/netns/sk-none" }), JSON.stringify(conf)],
      [env("GC"), JSON.stringify({ ...conf, cniVersion: "1.1.0" })],
      [{ CNI_COMMAND: "VERSION" }, ""],
      [env("ADD", { CNI_ARGS: "#exit=0" }), JSON.stringify(conf)],
    ];
    for (const [e, stdin] of malformed) {
      const viaSocket = await node.plugin(e, stdin);
      const inProcess = await runPlugin({ env: e, stdin });
      assert.equal(viaSocket.code, inProcess.exitCode, stdin);
      assert.deepEqual(JSON.parse(viaSocket.stdout), JSON.parse(inProcess.stdout), stdin);
    }
    const add = await node.plugin(env("ADD"), JSON.stringify(conf));
    assert.equal(add.code, 0, add.stdout);
    const result = JSON.parse(add.stdout);
    assert.match(result.ips[0].address, /^10\.244\.1\.\d+\/24$/);
    const check = await node.plugin(env("CHECK"), JSON.stringify({ ...conf, prevResult: result }));
    assert.equal(check.code, 0, check.stdout);
    assert.equal(check.stdout, "");
    assert.equal((await node.plugin(env("DEL"), JSON.stringify(conf))).code, 0);
  } finally {
    Deno.env.delete("SKIFF_ROOT");
  }
  await stop();
  // a stale socket file (no one listening): the shim runs the plugin itself
  await run([
    "python3",
    "-c",
    `import socket; socket.socket(socket.AF_UNIX).bind("${node.socket}")`,
  ]);
  assert.ok((await Deno.stat(node.socket)).isSocket);
  const add = await node.plugin(env("ADD"), JSON.stringify(conf));
  assert.equal(add.code, 0, add.stdout + add.stderr);
  const del = await node.plugin(env("DEL"), JSON.stringify(conf));
  assert.equal(del.code, 0, del.stdout);
  const bad = await node.plugin(env("ADD"), "{broken");
  assert.equal(JSON.parse(bad.stdout).code, 6);
  const after = await node.snapshot();
  assert.deepEqual(after.delegates, before.delegates);
  assert.deepEqual(after.allocations, []);
});

Deno.test("an agent outside the node namespace serves the socket with hostNetns", async () => {
  await using node = await createCniNode();
  const netns = await node.addNetns("h1");
  await installPlugin(node.binDir, { socket: node.socket });
  // the bridge is named after the run, so a wrong namespace could only ever make sk* objects
  const bridge = `${node.prefix}br`;
  const conf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "skiff",
    type: "skiff",
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
    delegate: { bridge },
  });
  const env = (command: string) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: "h1",
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: node.binDir,
  });
  const server = await serveCni(node.socket, { hostNetns: node.nsPath });
  try {
    Deno.env.set("SKIFF_ROOT", "/nonexistent-skiff-root");
    const add = await node.plugin(env("ADD"), conf);
    assert.equal(add.code, 0, add.stdout);
    assert.ok((await node.snapshot()).links.includes(bridge), "bridge made in the node netns");
    const inRoot = await run(["ip", "link", "show", bridge], { allowFailure: true });
    assert.notEqual(inRoot.code, 0, "no bridge in the root namespace");
    assert.equal((await node.plugin(env("DEL"), conf)).code, 0);
    assert.deepEqual((await node.snapshot()).allocations, []);
  } finally {
    Deno.env.delete("SKIFF_ROOT");
    await server.close();
    await run(["ip", "link", "del", bridge], { allowFailure: true }); // only if it went wrong
  }
});
