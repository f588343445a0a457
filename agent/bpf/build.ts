/**
 * Builds skiff's BPF objects (clang-19 → per-source objects → `bpftool gen object` static link)
 * and the Go loader, each only when an input changed.
 *
 * How it works: every source compiles to `<outDir>/obj/<program>/<source>.o` with a clang
 * depfile (`-MD`) beside it and a `.cmd` stamp of the exact command line. A source object is
 * stale when it is missing, when its command line changed, or when any file in its depfile
 * (the source and every header it included) is newer than it. A program's linked object
 * `<outDir>/<name>.o` is stale when any of its source objects is newer or was rebuilt.
 *
 * Linker choice: `bpftool gen object` (libbpf's static linker, Debian's bpftool 7.1 / libbpf
 * 1.1.2) rather than bpf-linker: it is already installed with libbpf-dev's toolchain, links in
 * about 2 ms, and understands libbpf's BTF-defined `.maps` with `extern` declarations, which is
 * exactly what a multi-file program needs. bpf-linker would be a cargo build against Debian's
 * LLVM (minutes, version coupling to one LLVM) to gain LLVM-IR level linking we do not use.
 * @module
 */

/** One BPF program: the sources linked into `<outDir>/<name>.o`. */
export interface BpfProgramSpec {
  /** Output name: the object is `<outDir>/<name>.o`. */
  readonly name: string;
  /**
   * Source files relative to the source dir. The file that DEFINES the maps (the others
   * declare them `extern`) must come first: libbpf 1.1.2's linker otherwise keeps the extern
   * declaration's `.maps` layout and loading fails with "map relo failed to find map for
   * section '.maps'". {@linkcode buildBpf} links them in exactly this order.
   */
  readonly sources: readonly string[];
  /** Extra clang flags for every source of this program (e.g. `-DSKIFF_COUNTER_MAX_SOURCES=64`). */
  readonly cflags?: readonly string[];
}

/** Every program skiff ships; a new program is one line here. */
export const BPF_PROGRAMS: readonly BpfProgramSpec[] = [
  { name: "counter", sources: ["counter_maps.c", "counter.c"] },
  { name: "tc_lb", sources: ["tc_lb.c"] },
  { name: "sock_lb", sources: ["sock_lb.c"] },
  { name: "sock_destroy", sources: ["sock_destroy.c"] },
];

/** Where the repository's top level is (this file is agent/bpf/build.ts). */
import { PROJECT_ROOT as REPO_ROOT } from "../project_root.ts";
export { REPO_ROOT };

/** Options for {@linkcode buildBpf}. */
export interface BpfBuildOptions {
  /** Programs to build. Default {@linkcode BPF_PROGRAMS}. */
  programs?: readonly BpfProgramSpec[];
  /** Directory holding the sources and `include/`. Default `<repo>/bpf`. */
  srcDir?: string;
  /** Output directory. Default `<repo>/build/bpf`. */
  outDir?: string;
  /** Include dirs searched before the UAPI headers. Default `[<srcDir>/include]`. */
  includeDirs?: readonly string[];
  /** The clang binary. Default `clang-19`. */
  clang?: string;
  /** Rebuild everything whatever the timestamps say. Default false. */
  force?: boolean;
}

/** What happened to one program. */
export interface BpfBuildResult {
  readonly name: string;
  /** Absolute path of the linked object. */
  readonly object: string;
  /** Sources that were compiled this time (empty when everything was up to date). */
  readonly compiled: readonly string[];
  /** Whether the linked object was written this time. */
  readonly linked: boolean;
}

/** A compile or link step failed; `file` is the source (or object) and `output` what the tool printed. */
export class BuildError extends Error {
  constructor(
    readonly step: "compile" | "link" | "go build",
    readonly file: string,
    readonly output: string,
  ) {
    super(`${step} failed for ${file}:\n${output.trimEnd()}`);
    this.name = "BuildError";
  }
}

/** The include path every source gets: the shared headers, then the multiarch UAPI headers. */
function includeFlags(includeDirs: readonly string[]): string[] {
  return [...includeDirs.flatMap((dir) => ["-I", dir]), "-I/usr/include/x86_64-linux-gnu"];
}

async function mtime(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** The prerequisites listed in a make-style depfile written by `clang -MD`. */
export function parseDepfile(text: string): string[] {
  const body = text.replace(/\\\n/g, " ");
  const colon = body.indexOf(": ");
  if (colon < 0) return [];
  // clang escapes spaces in paths as "\ "; keep them inside one path.
  return body.slice(colon + 2).trim().split(/(?<!\\)\s+/).filter((p) => p !== "").map((p) =>
    p.replace(/\\ /g, " ")
  );
}

/** True when `target` is missing or older than any of `inputs` (a missing input counts as newer). */
async function stale(target: string, inputs: readonly string[], cwd: string): Promise<boolean> {
  const targetTime = await mtime(target);
  if (targetTime === undefined) return true;
  for (const input of inputs) {
    const t = await mtime(input.startsWith("/") ? input : `${cwd}/${input}`);
    if (t === undefined || t > targetTime) return true;
  }
  return false;
}

async function exec(
  argv: readonly string[],
  cwd: string,
): Promise<{ code: number; output: string }> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    // Reported like a shell would, so the BuildError names the missing tool.
    return { code: 127, output: `${argv[0]}: command not found (run: bash scripts/setup.sh)` };
  }
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: decoder.decode(result.stderr) + decoder.decode(result.stdout),
  };
}

/** Compiles one source unless its object is up to date; returns whether it compiled. */
async function compileSource(
  source: string,
  object: string,
  srcDir: string,
  clang: string,
  cflags: readonly string[],
  force: boolean,
): Promise<boolean> {
  const depfile = `${object}.d`;
  const stampFile = `${object}.cmd`;
  const command = (out: string, dep: string) => [
    clang,
    "-O2",
    "-g",
    "-target",
    "bpf",
    "-Wall",
    ...cflags,
    "-MD",
    "-MF",
    dep,
    "-c",
    source,
    "-o",
    out,
  ];
  // The stamp is the command with the final names; the compile writes to per-process
  // temporary names renamed into place, so concurrent builds never read a half object.
  const stamp = command(object, depfile).join("\0");
  if (!force && (await readText(stampFile)) === stamp) {
    const deps = await readText(depfile);
    if (deps !== undefined && !(await stale(object, [source, ...parseDepfile(deps)], srcDir))) {
      return false;
    }
  }
  const tmpObject = `${object}.${Deno.pid}.tmp`;
  const tmpDepfile = `${depfile}.${Deno.pid}.tmp`;
  const { code, output } = await exec(command(tmpObject, tmpDepfile), srcDir);
  if (code !== 0) {
    // Leave no object that a later run could take as up to date.
    for (const path of [tmpObject, tmpDepfile, object, stampFile]) {
      await Deno.remove(path).catch(() => {});
    }
    throw new BuildError("compile", `${srcDir}/${source}`, output);
  }
  await Deno.rename(tmpDepfile, depfile);
  await Deno.rename(tmpObject, object);
  await Deno.writeTextFile(stampFile, stamp);
  return true;
}

/**
 * Checks the linked object's `.maps` section: every map must have its own bytes. Linking an
 * object that only declares the maps (`extern`) before the one that defines them yields maps
 * that all sit at offset 0, which loaders then resolve to the wrong map or reject. Returns a
 * description of the overlap, or undefined when the layout is sound.
 */
async function mapsOverlap(object: string, cwd: string): Promise<string | undefined> {
  const { code, output } = await exec(["bpftool", "btf", "dump", "file", object], cwd);
  if (code !== 0) return `cannot read the BTF of ${object}: ${output.trim()}`;
  const section = output.split("\n[").find((block) => block.includes("DATASEC '.maps'"));
  if (!section) return undefined;
  const vars = [...section.matchAll(/offset=(\d+) size=(\d+) \(VAR '([^']+)'\)/g)]
    .map((m) => ({ offset: Number(m[1]), size: Number(m[2]), name: m[3] }))
    .sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < vars.length; i++) {
    const previous = vars[i - 1];
    if (previous.offset + previous.size > vars[i].offset) {
      return `maps "${previous.name}" and "${vars[i].name}" overlap in .maps ` +
        `(offsets ${previous.offset} and ${vars[i].offset}).`;
    }
  }
  return undefined;
}

/** Compiles and links every program whose inputs changed; throws {@linkcode BuildError}. */
export async function buildBpf(options: BpfBuildOptions = {}): Promise<BpfBuildResult[]> {
  const programs = options.programs ?? BPF_PROGRAMS;
  const srcDir = options.srcDir ?? `${REPO_ROOT}/bpf`;
  const outDir = options.outDir ?? `${REPO_ROOT}/build/bpf`;
  const clang = options.clang ?? "clang-19";
  const includeDirs = options.includeDirs ?? [`${srcDir}/include`];
  const force = options.force ?? false;
  const names = new Set<string>();
  for (const program of programs) {
    if (!/^[A-Za-z0-9_-]+$/.test(program.name)) {
      throw new TypeError(`BPF program name "${program.name}" must be [A-Za-z0-9_-]+`);
    }
    if (names.has(program.name)) {
      throw new TypeError(`BPF program "${program.name}" is listed twice`);
    }
    if (program.sources.length === 0) {
      throw new TypeError(`BPF program "${program.name}" has no sources`);
    }
    names.add(program.name);
  }

  for (const program of programs) {
    for (const source of program.sources) {
      if ((await mtime(`${srcDir}/${source}`)) === undefined) {
        throw new BuildError("compile", `${srcDir}/${source}`, "no such source file");
      }
    }
  }

  const results: BpfBuildResult[] = [];
  for (const program of programs) {
    const objDir = `${outDir}/obj/${program.name}`;
    await Deno.mkdir(objDir, { recursive: true });
    const compiled: string[] = [];
    const objects: string[] = [];
    for (const source of program.sources) {
      const object = `${objDir}/${source.replace(/\.c$/, "").replaceAll("/", "_")}.o`;
      const cflags = [...includeFlags(includeDirs), ...(program.cflags ?? [])];
      if (await compileSource(source, object, srcDir, clang, cflags, force)) {
        compiled.push(source);
      }
      objects.push(object);
    }
    const linkedObject = `${outDir}/${program.name}.o`;
    let linked = false;
    if (force || compiled.length > 0 || await stale(linkedObject, objects, srcDir)) {
      // Write to a temporary name and rename, so a failed link never leaves a half object.
      const tmp = `${linkedObject}.${Deno.pid}.tmp`;
      // Order matters: objects[0] is the one defining the maps (see BpfProgramSpec.sources).
      const { code, output } = await exec(["bpftool", "gen", "object", tmp, ...objects], srcDir);
      if (code !== 0) {
        await Deno.remove(tmp).catch(() => {});
        throw new BuildError("link", `${program.name}.o (${program.sources.join(", ")})`, output);
      }
      const overlap = await mapsOverlap(tmp, srcDir);
      if (overlap) {
        await Deno.remove(tmp).catch(() => {});
        throw new BuildError(
          "link",
          `${program.name}.o (${program.sources.join(", ")})`,
          `${overlap}\nThe source that defines the maps must come first in the program's sources ` +
            "(libbpf 1.1.2's linker keeps the layout of the first `.maps` it sees).",
        );
      }
      await Deno.rename(tmp, linkedObject);
      linked = true;
    }
    results.push({ name: program.name, object: linkedObject, compiled, linked });
  }
  return results;
}

/** Options for {@linkcode buildLoader}. */
export interface LoaderBuildOptions {
  /** The Go module directory. Default `<repo>/bpf/loader`. */
  srcDir?: string;
  /** The binary to write. Default `<repo>/build/skiff-loader`. */
  output?: string;
  /** Rebuild whatever the timestamps say. Default false. */
  force?: boolean;
}

/** Builds the Go loader when a .go file, go.mod or go.sum is newer than the binary. */
export async function buildLoader(
  options: LoaderBuildOptions = {},
): Promise<{ path: string; rebuilt: boolean }> {
  const srcDir = options.srcDir ?? `${REPO_ROOT}/bpf/loader`;
  const output = options.output ?? `${REPO_ROOT}/build/skiff-loader`;
  const inputs: string[] = ["go.mod", "go.sum"];
  for await (const entry of Deno.readDir(srcDir)) {
    if (entry.isFile && entry.name.endsWith(".go") && !entry.name.endsWith("_test.go")) {
      inputs.push(entry.name);
    }
  }
  if (!options.force && !(await stale(output, inputs, srcDir))) {
    return { path: output, rebuilt: false };
  }
  await Deno.mkdir(output.replace(/\/[^/]*$/, ""), { recursive: true });
  const { code, output: text } = await exec(
    ["go", "build", "-trimpath", "-o", output, "."],
    srcDir,
  );
  if (code !== 0) throw new BuildError("go build", srcDir, text);
  // go build leaves an identical binary untouched; stamp it so the next check sees it fresh.
  const now = new Date();
  await Deno.utime(output, now, now);
  return { path: output, rebuilt: true };
}
