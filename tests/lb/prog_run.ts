/**
 * Test helpers for running LB programs without a network: compile a program (maps unpinned
 * by name, so bpftool pins them where the test says), load it with `bpftool prog loadall`
 * into a throw-away pin dir, and run it on a packet with BPF_PROG_TEST_RUN (`bpftool prog run`).
 * @module
 */
import { run } from "../../agent/net/exec.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A loaded object: its programs and maps pinned under `dir`; dispose removes them. */
export interface LoadedObject extends AsyncDisposable {
  readonly dir: string;
  readonly maps: string;
  prog(name: string): string;
}

/** Compiles bpf/<name>.c for tests (-DSKIFF_NO_PIN, extra -D flags) and loads it. */
export async function loadForTest(
  name: string,
  options: { defines?: Record<string, string | number> } = {},
): Promise<LoadedObject> {
  const id = Math.random().toString(36).slice(2, 8);
  const tmp = await Deno.makeTempDir({ prefix: "sklbt" });
  const obj = `${tmp}/${name}.o`;
  const defines = Object.entries(options.defines ?? {}).map(([k, v]) => `-D${k}=${v}`);
  await run([
    "clang-19",
    "-O2",
    "-g",
    "-target",
    "bpf",
    "-DSKIFF_NO_PIN",
    ...defines,
    "-I/usr/include/x86_64-linux-gnu",
    `-I${ROOT}bpf/include`,
    "-c",
    `${ROOT}bpf/${name}.c`,
    "-o",
    obj,
  ]);
  const dir = `/sys/fs/bpf/sk${id}t`;
  await Deno.mkdir(dir);
  const cleanup = async () => {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  };
  try {
    await run(["bpftool", "prog", "loadall", obj, `${dir}/progs`, "pinmaps", `${dir}/maps`]);
  } catch (error) {
    await cleanup();
    throw error;
  }
  return {
    dir,
    maps: `${dir}/maps`,
    prog: (p) => `${dir}/progs/${p}`,
    [Symbol.asyncDispose]: cleanup,
  };
}

/** What one BPF_PROG_TEST_RUN returned. */
export interface RunResult {
  readonly retval: number;
  readonly packet: Uint8Array;
}

/** Runs a pinned tc program once on `packet`. */
export async function progRun(progPath: string, packet: Uint8Array): Promise<RunResult> {
  const tmp = await Deno.makeTempDir({ prefix: "sklbp" });
  try {
    await Deno.writeFile(`${tmp}/in`, packet);
    const out = await run([
      "bpftool",
      "prog",
      "run",
      "pinned",
      progPath,
      "data_in",
      `${tmp}/in`,
      "data_out",
      `${tmp}/out`,
    ]);
    const m = /Return value: (-?\d+)/.exec(out.stdout + out.stderr);
    if (!m) throw new Error(`bpftool prog run printed no return value: ${out.stdout}`);
    return { retval: Number(m[1]), packet: await Deno.readFile(`${tmp}/out`) };
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}
