/**
 * A hostPort through the conflist's portmap reaches the Pod from an outside lab namespace, and
 * `skiff pod` (the CLI) drives add/list/check/del on a lab node. Traffic stays in the lab.
 */

import assert from "node:assert/strict";
import { createLab } from "../lab/lab.ts";
import { podCommand } from "../../cli/commands/pod.ts";
import { main } from "../../cli/skiff.ts";
import { readRecord } from "../../agent/cni/runtime.ts";
import { createCniNode } from "./cni_node.ts";

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    return { code: await fn(), out: lines.join("\n") };
  } finally {
    console.log = log;
  }
}

Deno.test("a hostPort mapped by `skiff pod add --port` reaches the Pod from outside", async () => {
  await using lab = await createLab({ nodes: 1 });
  const labNode = lab.nodes[0];
  await using node = await createCniNode({
    onNode: { name: labNode.name, nsPath: labNode.nsPath, prefix: lab.prefix },
  });
  const pod = `${lab.prefix}p1`;
  const flags = [
    "--node",
    labNode.name,
    "--conf",
    node.confFile,
    "--bin-dir",
    node.binDir,
    "--state-dir",
    node.stateDir,
  ];
  // through the skiff command table, as `deno task skiff pod add …` runs it
  const add = await capture(() => main(["pod", "add", pod, ...flags, "--port", "8080:80/tcp"]));
  assert.equal(add.code, 0);
  assert.match(add.out, new RegExp(`^${pod}\\t10\\.244\\.1\\.\\d+/24\\t/run/netns/${pod}$`));
  const list = await capture(() => podCommand(["list", ...flags]));
  assert.equal(list.code, 0);
  // the table `skiff pods` prints too: NAME STATUS IP PORTS NETNS
  assert.match(
    list.out,
    new RegExp(`^${pod}\\s+ok\\s+10\\.244\\.1\\.\\d+/24\\s+8080:80/tcp\\s`, "m"),
  );
  const check = await capture(() => podCommand(["check", pod, ...flags]));
  assert.equal(check.code, 0);

  const server = lab.spawn({ nsPath: `/run/netns/${pod}` } as never, [
    "socat",
    "TCP-LISTEN:80,fork,reuseaddr",
    "SYSTEM:echo hello-from-pod",
  ], { stdout: "null", stderr: "null" });
  let answer = "";
  for (let i = 0; i < 20 && !answer.includes("hello-from-pod"); i++) {
    const out = await lab.outside.run(
      ["timeout", "2", "socat", "-T1", "-", `TCP:${labNode.ip}:8080`],
      { allowFailure: true, stdin: "" },
    );
    answer = out.stdout;
    if (!answer) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(answer.trim(), "hello-from-pod");
  // the unmapped port is not forwarded
  const other = await lab.outside.run(
    ["timeout", "2", "socat", "-T1", "-", `TCP:${labNode.ip}:8081`],
    { allowFailure: true, stdin: "" },
  );
  assert.notEqual(other.stdout.trim(), "hello-from-pod");
  server.kill("SIGKILL");
  await server.status;

  const del = await capture(() => podCommand(["del", pod, ...flags]));
  assert.equal(del.code, 0);
  assert.equal(await readRecord(node.stateDir, pod), undefined);
  const after = await node.snapshot();
  assert.deepEqual(after.delegates, []);
  assert.deepEqual(after.allocations, []);
  assert.equal(after.natRules.filter((l) => l.includes("CNI-DN-")).length, 0);
  const gone = await lab.outside.run(
    ["timeout", "2", "socat", "-T1", "-", `TCP:${labNode.ip}:8080`],
    { allowFailure: true, stdin: "" },
  );
  assert.equal(gone.stdout.trim(), "");
  // a second del is fine, an unknown verb is a usage error
  assert.equal((await capture(() => podCommand(["del", pod, ...flags]))).code, 0);
  assert.equal(await podCommand(["frob", pod, ...flags]), 2);
});
