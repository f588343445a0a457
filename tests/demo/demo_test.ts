/**
 * The demo as a user runs it: a subprocess that must exit 0, show VIP answers from backends on
 * all three nodes and leave nothing behind; and `--keep` leaving a working lab that `down`
 * removes completely.
 */
import assert from "node:assert/strict";
import { run } from "../../agent/net/exec.ts";
import { findLeftovers, type Leftovers } from "../lab/lab.ts";
import { DEMO_DIR, type DemoState, isAgent, pidAlive, STATE_FILE } from "./demo_state.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

async function demo(args: string[]): Promise<{ code: number; out: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).spawn();
  const { code, stdout, stderr } = await child.output();
  const dec = new TextDecoder();
  return { code, out: dec.decode(stdout) + dec.decode(stderr) };
}

function runIdOf(out: string): string {
  const m = /run id ([a-z0-9]+)/.exec(out);
  assert.ok(m, `no run id in:\n${out}`);
  return m[1];
}

/** The "Answers by backend node: n1=.. n2=.. n3=.." line, as counts by node. */
function answersByNode(out: string): Map<string, number> {
  const m = /Answers by backend node: (.*)$/m.exec(out);
  assert.ok(m, `no answers line in:\n${out}`);
  return new Map(
    m[1].trim().split(/\s+/).map((kv) => {
      const [k, v] = kv.split("=");
      return [k, Number(v)];
    }),
  );
}

function empty(left: Leftovers): boolean {
  return Object.values(left).every((l) => l.length === 0);
}

async function assertNothingLeft(runId: string): Promise<void> {
  const left = await findLeftovers(`sk${runId}`);
  assert.ok(empty(left), `left behind: ${JSON.stringify(left)}`);
  const demoDir = await Array.fromAsync(Deno.readDir(DEMO_DIR)).catch(() => []);
  assert.deepEqual(demoDir, [], `${DEMO_DIR} is not empty`);
  const tmp = await Array.fromAsync(Deno.readDir("/tmp"));
  assert.deepEqual(tmp.filter((e) => e.name.startsWith(`skiff-sk${runId}-`)), [], "world dir left");
  await assert.rejects(Deno.lstat(`/run/skiff-lab/${runId}.json`), Deno.errors.NotFound);
}

async function assertNoKeptLab(): Promise<void> {
  const kept = await Deno.lstat(STATE_FILE).then(() => true, () => false);
  assert.ok(!kept, `a kept demo lab exists (${STATE_FILE}): run \`deno task demo down\` first`);
}

Deno.test({
  name:
    "the demo builds a 3-node cluster, answers the VIP from backends on every node, leaves nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await assertNoKeptLab();
    const { code, out } = await demo([]);
    assert.equal(code, 0, out);
    const runId = runIdOf(out);
    const byNode = answersByNode(out);
    assert.deepEqual([...byNode.keys()], [1, 2, 3].map((i) => `sk${runId}n${i}`));
    for (const [node, n] of byNode) assert.ok(n > 0, `no answer from a backend on ${node}`);
    assert.match(out, /Health:\s+ready/);
    assert.match(out, /default\s+web\s+ClusterIP\s+10\.96\.0\.10:80\/TCP\s+programmed\s+6\/6/);
    assert.equal(out.match(/^\s+\*?\s+10\.244\.\d+\.0\/24\s+192\.168\.100\.1[123]\s/gm)?.length, 3);
    assert.match(out, /30\/30 answered/);
    await assertNothingLeft(runId);
  },
});

Deno.test({
  name: "demo --keep leaves the agents serving the VIP, and demo down removes everything",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await assertNoKeptLab();
    const kept = await demo(["--keep"]);
    let state: DemoState | undefined;
    try {
      assert.equal(kept.code, 0, kept.out);
      assert.match(kept.out, /demo down/);
      state = JSON.parse(await Deno.readTextFile(STATE_FILE)) as DemoState;
      assert.equal(state.runId, runIdOf(kept.out));
      for (const n of state.nodes) assert.ok(isAgent(n.agentPid), `agent of ${n.name} is gone`);
      // The kept lab still works after the demo process exited: a Pod on node 3 asks the VIP.
      const n3 = state.nodes[2];
      const pod = state.pods.find((p) => p.node === n3.name)!;
      const ask = await run([
        "sh",
        "-c",
        `echo $$ > ${n3.cgroup}/cgroup.procs && exec timeout 3 socat -T 2 -u TCP:10.96.0.10:80,connect-timeout=2 -`,
      ], { netns: `/run/netns/${pod.name}`, allowFailure: true });
      assert.match(ask.stdout, new RegExp(`^sk${state.runId}n\\d[ab] on sk${state.runId}n\\d`));
      // A second demo refuses to start next to the kept one.
      const again = await demo([]);
      assert.equal(again.code, 1, again.out);
      assert.match(again.out, /already running .*demo down/);
    } finally {
      const down = await demo(["down"]);
      assert.equal(down.code, 0, down.out);
      assert.match(down.out, /nothing named sk\w+\* is left/);
    }
    await assertNothingLeft(state!.runId);
    for (const n of state!.nodes) assert.ok(!pidAlive(n.agentPid), `agent ${n.agentPid} runs`);
    const again = await demo(["down"]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /No kept demo lab/);
  },
});
