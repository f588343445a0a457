/**
 * `deno task build`: compiles and links the BPF objects into build/bpf/ and builds the Go
 * loader into build/skiff-loader, each only when its inputs changed. `--force` rebuilds all;
 * `--bpf-only`, `--src-dir`, `--out-dir` build another copy of bpf/ (used by the build tests).
 */
import { parseArgs } from "node:util";
import { buildBpf, BuildError, buildLoader } from "../agent/bpf/build.ts";

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      force: { type: "boolean", default: false },
      "bpf-only": { type: "boolean", default: false },
      "src-dir": { type: "string" },
      "out-dir": { type: "string" },
    },
  });
  const force = values.force ?? false;
  try {
    const started = performance.now();
    const results = await buildBpf({ force, srcDir: values["src-dir"], outDir: values["out-dir"] });
    for (const result of results) {
      const what = result.linked
        ? `built (compiled ${result.compiled.length ? result.compiled.join(", ") : "nothing"})`
        : "up to date";
      console.log(`bpf ${result.name}: ${what} → ${result.object}`);
    }
    if (!values["bpf-only"]) {
      const loader = await buildLoader({ force });
      console.log(`loader: ${loader.rebuilt ? "built" : "up to date"} → ${loader.path}`);
    }
    console.log(`build done in ${Math.round(performance.now() - started)} ms`);
    return 0;
  } catch (error) {
    if (error instanceof BuildError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
}

Deno.exit(await main());
