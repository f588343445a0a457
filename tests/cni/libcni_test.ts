/**
 * libcni (containernetworking/cni, the library containerd and CRI-O use) drives the conflist
 * skiff wrote: ADD, CHECK, DEL with and without a hostPort, and on a 1.1.0 list STATUS and GC.
 * The Go driver under tests/cni/libcni is built here (module cache from the Go proxy).
 */

import assert from "node:assert/strict";
import { run } from "../../agent/net/exec.ts";
import { writeConflist } from "../../agent/cni/conflist.ts";
import { PROJECT_ROOT } from "../../agent/cni/install.ts";
import { createCniNode } from "./cni_node.ts";

const DRIVER = `${PROJECT_ROOT}/build/libcni-driver`;

async function buildDriver(): Promise<void> {
  const out = await new Deno.Command("timeout", {
    args: ["300", "go", "build", "-o", DRIVER, "."],
    cwd: `${PROJECT_ROOT}/tests/cni/libcni`,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, `go build: ${new TextDecoder().decode(out.stderr)}`);
}

Deno.test("libcni runs ADD, CHECK, DEL, STATUS and GC on the conflist skiff wrote", async () => {
  await buildDriver();
  await using node = await createCniNode();
  const before = await node.snapshot();
  const cacheDir = `${node.root}/libcni-cache`;
  const driver = async (conflist: string, id: string, verbs: string[], extra: string[] = []) => {
    return await run([
      DRIVER,
      "-conflist",
      conflist,
      "-bin-dir",
      node.binDir,
      "-netns",
      `/run/netns/${node.prefix}${id}`,
      "-id",
      id,
      "-cache-dir",
      cacheDir,
      ...extra,
      ...verbs,
    ], { netns: node.nsPath, allowFailure: true });
  };

  await node.addNetns("lc1");
  const add = await driver(node.confFile, "lc1", ["ADD", "CHECK"]);
  assert.equal(add.code, 0, add.stderr);
  const result = JSON.parse(add.stdout);
  assert.equal(result.cniVersion, "1.0.0");
  assert.match(result.ips[0].address, /^10\.244\.1\.\d+\/24$/);
  assert.ok(result.routes.some((r: { dst: string }) => r.dst === "0.0.0.0/0"), "default route");
  assert.equal((await node.snapshot()).delegates.length, 1);
  const del = await driver(node.confFile, "lc1", ["DEL", "DEL"]);
  assert.equal(del.code, 0, del.stderr);
  let after = await node.snapshot();
  assert.deepEqual(after.delegates, []);
  assert.deepEqual(after.allocations, []);

  // a hostPort goes to portmap only (its declared capability); DEL with it leaves no rule
  await node.addNetns("lc2");
  const add2 = await driver(node.confFile, "lc2", ["ADD"], ["-host-port", "8080"]);
  assert.equal(add2.code, 0, add2.stderr);
  assert.ok((await node.snapshot()).natRules.some((l) => l.includes("--dport 8080")));
  const del2 = await driver(node.confFile, "lc2", ["DEL"], ["-host-port", "8080"]);
  assert.equal(del2.code, 0, del2.stderr);
  after = await node.snapshot();
  assert.deepEqual(after.natRules, before.natRules);
  assert.deepEqual(after.allocations, []);

  // spec 1.1.0 (skiff alone: the Debian portmap stops at 1.0.0): STATUS and GC through libcni
  const list11 = `${node.root}/etc/cni/net.d/20-skiff11.conflist`;
  await writeConflist(list11, {
    cniVersion: "1.1.0",
    portmap: false,
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
  });
  assert.equal((await driver(list11, "lc3", ["STATUS"])).code, 0);
  for (const id of ["lc3", "lc4"]) {
    await node.addNetns(id);
    const out = await driver(list11, id, ["ADD", "CHECK"]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).cniVersion, "1.1.0");
  }
  assert.deepEqual((await node.snapshot()).delegates.length, 2);
  const gc = await driver(list11, "lc3", ["GC"]); // only lc3/eth0 is valid
  assert.equal(gc.code, 0, gc.stderr);
  after = await node.snapshot();
  assert.equal(after.delegates.length, 1);
  assert.equal(after.allocations.length, 1);
  await Deno.rename(node.subnetFile, `${node.subnetFile}.away`);
  const status = await driver(list11, "lc3", ["STATUS"]);
  assert.notEqual(status.code, 0);
  assert.match(status.stderr, /subnet file .* does not exist/);
  assert.equal(JSON.parse(status.stderr).code, 50);
  await Deno.rename(`${node.subnetFile}.away`, node.subnetFile);
  assert.equal((await driver(list11, "lc3", ["DEL"])).code, 0);
  after = await node.snapshot();
  assert.deepEqual(after.delegates, []);
  assert.deepEqual(after.allocations, []);
});
