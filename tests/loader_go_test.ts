/**
 * The Go loader's own unit tests (protocol handling, panic recovery, pin names), plus gofmt
 * and go vet, run from the Deno suite so CI counts them.
 */
import assert from "node:assert/strict";
import { REPO_ROOT } from "../agent/bpf/build.ts";
import { run } from "../agent/net/exec.ts";

const LOADER_DIR = `${REPO_ROOT}/bpf/loader`;

Deno.test("the loader's Go sources are gofmt-clean, vet-clean, and their unit tests pass", async () => {
  const unformatted = await run(["gofmt", "-l", LOADER_DIR]);
  assert.equal(unformatted.stdout.trim(), "", "gofmt would change these files");
  await run(["go", "-C", LOADER_DIR, "vet", "./..."]);
  const tested = await run(["go", "-C", LOADER_DIR, "test", "-count=1", "./..."]);
  assert.match(tested.stdout, /^ok\s+skiff\.dev\/loader/m);
});
