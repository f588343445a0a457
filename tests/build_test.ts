/**
 * The BPF build on a throw-away copy of bpf/: multi-object compile + static link, rebuilds
 * driven by clang depfiles (a shared header counts), and compiler errors that name the file.
 */
import assert from "node:assert/strict";
import { BPF_PROGRAMS, buildBpf, BuildError, parseDepfile, REPO_ROOT } from "../agent/bpf/build.ts";
import { run } from "../agent/net/exec.ts";

/** A copy of bpf/ (sources and include/) in a temp dir, removed by dispose. */
async function copyOfBpf(): Promise<AsyncDisposable & { src: string; out: string }> {
  const root = await Deno.makeTempDir({ prefix: "skiff-build-test-" });
  await run(["cp", "-r", `${REPO_ROOT}/bpf`, `${root}/bpf`]);
  await Deno.remove(`${root}/bpf/loader`, { recursive: true });
  return {
    src: `${root}/bpf`,
    out: `${root}/out`,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

/** Sets a file's mtime into the future so it is certainly newer than any object. */
async function touchLater(path: string): Promise<void> {
  const later = new Date(Date.now() + 5_000);
  await Deno.utime(path, later, later);
}

async function btfDump(object: string): Promise<string> {
  return (await run(["bpftool", "btf", "dump", "file", object])).stdout;
}

Deno.test("buildBpf() compiles every source and links them into one object with one set of maps", async () => {
  await using tree = await copyOfBpf();
  const results = await buildBpf({ srcDir: tree.src, outDir: tree.out });
  assert.deepEqual(results.map((r) => r.name), BPF_PROGRAMS.map((p) => p.name));
  const counter = results.find((r) => r.name === "counter")!;
  assert.deepEqual(counter.compiled, ["counter_maps.c", "counter.c"]);
  assert.equal(counter.linked, true);
  assert.equal(counter.object, `${tree.out}/counter.o`);
  const btf = await btfDump(counter.object);
  // Both programs (from counter.c) and both maps (defined in counter_maps.c, extern in
  // counter.c) are in the linked object, the maps once: the extern resolved to the definition.
  assert.match(btf, /FUNC 'count_ingress'/);
  assert.match(btf, /FUNC 'count_egress'/);
  assert.match(btf, /DATASEC '\.maps' size=\d+ vlen=2/);
  assert.equal(btf.match(/\] VAR 'counter_totals'/g)?.length, 1);
  assert.equal(btf.match(/\] VAR 'counter_by_source'/g)?.length, 1);
  assert.match(btf, /STRUCT 'skiff_counter_key' size=8/);
});

Deno.test("buildBpf() rebuilds only what a changed source or header touches", async () => {
  await using tree = await copyOfBpf();
  const options = { srcDir: tree.src, outDir: tree.out };
  await buildBpf(options);
  const linkedBefore = (await Deno.stat(`${tree.out}/counter.o`)).mtime!.getTime();

  const unchanged = (await buildBpf(options)).find((r) => r.name === "counter")!;
  assert.deepEqual(unchanged.compiled, []);
  assert.equal(unchanged.linked, false);
  assert.equal((await Deno.stat(`${tree.out}/counter.o`)).mtime!.getTime(), linkedBefore);

  // One source: only it recompiles, and the program relinks.
  await touchLater(`${tree.src}/counter.c`);
  const oneSource = (await buildBpf(options)).find((r) => r.name === "counter")!;
  assert.deepEqual(oneSource.compiled, ["counter.c"]);
  assert.equal(oneSource.linked, true);

  // A header both sources include (found through the depfile): both recompile.
  await touchLater(`${tree.src}/include/skiff_abi.h`);
  const header = (await buildBpf(options)).find((r) => r.name === "counter")!;
  assert.deepEqual(header.compiled, ["counter_maps.c", "counter.c"]);

  // Changed flags are a change too (the command line is stamped).
  const programs = [{ ...BPF_PROGRAMS[0], cflags: ["-DSKIFF_COUNTER_MAX_SOURCES=64"] }];
  const flags = await buildBpf({ ...options, programs });
  assert.deepEqual(flags[0].compiled, ["counter_maps.c", "counter.c"]);
  // BTF map definitions encode max_entries as an array length.
  assert.match(await btfDump(flags[0].object), /nr_elems=64\b/);
});

Deno.test("a broken C file fails the build with the compiler's message and the file, and leaves no object", async () => {
  await using tree = await copyOfBpf();
  const options = { srcDir: tree.src, outDir: tree.out };
  await buildBpf(options);
  await Deno.writeTextFile(
    `${tree.src}/counter.c`,
    (await Deno.readTextFile(`${tree.src}/counter.c`)).replace(
      "return TC_ACT_UNSPEC;",
      "return TC_ACT_UNSPEC + undefined_symbol;",
    ),
  );
  const error = await buildBpf(options).then(() => undefined, (e) => e);
  assert.ok(error instanceof BuildError, `expected a BuildError, got ${error}`);
  assert.equal(error.step, "compile");
  assert.equal(error.file, `${tree.src}/counter.c`);
  assert.match(
    error.output,
    /counter\.c:\d+:\d+: error: use of undeclared identifier 'undefined_symbol'/,
  );
  assert.match(error.message, /compile failed for .*counter\.c/);
  // The stale object is gone, so the next build cannot take the old one as up to date.
  await assert.rejects(Deno.stat(`${tree.out}/obj/counter/counter.o`), Deno.errors.NotFound);

  // The CLI prints the same and exits non-zero.
  const cli = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${REPO_ROOT}/cli/build.ts`,
      "--bpf-only",
      "--src-dir",
      tree.src,
      "--out-dir",
      tree.out,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(cli.stderr);
  assert.equal(cli.code, 1);
  assert.match(stderr, /compile failed for .*counter\.c/);
  assert.match(stderr, /error: use of undeclared identifier 'undefined_symbol'/);
});

Deno.test("linking the extern-map user first is refused (the libbpf 1.1.2 trap)", async () => {
  await using tree = await copyOfBpf();
  const error = await buildBpf({
    srcDir: tree.src,
    outDir: tree.out,
    programs: [{ name: "counter", sources: ["counter.c", "counter_maps.c"] }],
  }).then(() => undefined, (e) => e);
  assert.ok(error instanceof BuildError, `expected a BuildError, got ${error}`);
  assert.equal(error.step, "link");
  assert.match(error.output, /maps "counter_\w+" and "counter_\w+" overlap in \.maps/);
  assert.match(error.output, /defines the maps must come first/);
  await assert.rejects(Deno.stat(`${tree.out}/counter.o`), Deno.errors.NotFound);
});

Deno.test("parseDepfile() reads continuation lines and escaped spaces", () => {
  assert.deepEqual(
    parseDepfile("/o/x.o: x.c include/a.h \\\n  /usr/include/linux/bpf.h my\\ dir/b.h\n"),
    ["x.c", "include/a.h", "/usr/include/linux/bpf.h", "my dir/b.h"],
  );
});
