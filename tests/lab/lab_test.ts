/** The lab harness builds a working world and always leaves nothing behind. */
import assert from "node:assert/strict";
import { createLab, findLeftovers, reapDeadRuns } from "./lab.ts";

const EMPTY = { namespaces: [], cgroups: [], pins: [], processes: [] };

Deno.test("createLab() joins nodes and the outside host on one underlay", async () => {
  let prefix = "";
  {
    await using lab = await createLab({ nodes: 2 });
    prefix = lab.prefix;
    assert.match(prefix, /^sk[a-z0-9]{4}$/);
    for (const node of lab.nodes) {
      assert.ok(node.name.length <= 15);
      const st = await Deno.stat(node.cgroup);
      assert.ok(st.isDirectory);
      assert.ok((await Deno.stat(node.pinDir)).isDirectory);
    }
    // Traffic stays inside the lab: node 1 → node 2, outside → node 1.
    await lab.nodes[0].run(["ping", "-c", "1", "-W", "2", lab.nodes[1].ip]);
    await lab.outside.run(["ping", "-c", "1", "-W", "2", lab.nodes[0].ip]);
    // A spawned process lands in the node's netns and cgroup.
    const child = lab.spawn(lab.nodes[0], ["sleep", "30"], { cgroup: lab.nodes[0].cgroup });
    let procs = "";
    for (let i = 0; i < 100 && procs.trim() === ""; i++) {
      await new Promise((r) => setTimeout(r, 10));
      procs = await Deno.readTextFile(`${lab.nodes[0].cgroup}/cgroup.procs`);
    }
    assert.equal(procs.trim(), String(child.pid));
    const netns = await Deno.readLink(`/proc/${child.pid}/ns/net`);
    const nodeNs = (await Deno.stat(lab.nodes[0].nsPath)).ino;
    assert.equal(netns, `net:[${nodeNs}]`);
  }
  assert.deepEqual(await findLeftovers(prefix), EMPTY);
});

Deno.test("a lab whose owner was SIGKILLed is removed by the next run", async () => {
  const script = new URL("./crash_fixture.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const prefix = text.trim();
  assert.match(prefix, /^sk[a-z0-9]{4}$/);
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel();
  const before = await findLeftovers(prefix);
  assert.ok(before.namespaces.length > 0, "the crashed run left its namespaces");
  assert.ok(before.cgroups.length > 0 && before.pins.length > 0);
  const reaped = await reapDeadRuns();
  assert.ok(reaped.includes(prefix.slice(2)));
  assert.deepEqual(await findLeftovers(prefix), EMPTY);
});

Deno.test("a failing test body still tears the lab down", async () => {
  let prefix = "";
  await assert.rejects(async () => {
    await using lab = await createLab({ nodes: 1, outside: false });
    prefix = lab.prefix;
    lab.spawn(lab.nodes[0], ["sleep", "30"], { cgroup: lab.nodes[0].cgroup });
    throw new Error("boom");
  }, /boom/);
  assert.deepEqual(await findLeftovers(prefix), EMPTY);
});
