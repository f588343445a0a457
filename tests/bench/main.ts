/**
 * `deno task bench`: runs every tests/bench/*_bench.ts module's exported `bench*` function in
 * one process, one after the other (the machine has 2 cores: nothing runs side by side), and
 * prints one table per module. `--only NAME` runs the modules whose file name contains NAME;
 * `--json FILE` also writes the results.
 */
import { parseArgs } from "node:util";

/** One measured number. */
export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

type BenchFn = () => Promise<BenchResult[]>;

function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(Math.abs(v) >= 10 ? 1 : 3);
}

function printTable(title: string, results: BenchResult[]): void {
  const w = Math.max(6, ...results.map((r) => r.name.length));
  console.log(`\n## ${title}`);
  console.log(`${"metric".padEnd(w)}  ${"value".padStart(14)}  unit`);
  console.log(`${"-".repeat(w)}  ${"-".repeat(14)}  ----`);
  for (const r of results) {
    console.log(`${r.name.padEnd(w)}  ${formatValue(r.value).padStart(14)}  ${r.unit}`);
  }
}

const { values } = parseArgs({
  args: Deno.args,
  options: { only: { type: "string" }, json: { type: "string" } },
});
const dir = new URL("./", import.meta.url);
const files: string[] = [];
for await (const e of Deno.readDir(dir)) {
  if (e.isFile && e.name.endsWith("_bench.ts")) files.push(e.name);
}
files.sort();
const all: Record<string, BenchResult[] | { error: string }> = {};
let failures = 0;
for (const file of files) {
  if (values.only && !file.includes(values.only)) continue;
  const mod = await import(new URL(file, dir).href) as Record<string, unknown>;
  for (const [name, fn] of Object.entries(mod)) {
    // bench* functions that take no arguments are whole benchmarks; others are their parts.
    if (!name.startsWith("bench") || typeof fn !== "function" || fn.length > 0) continue;
    const title = `${file.replace(/_bench\.ts$/, "")}: ${name}`;
    try {
      const results = await (fn as BenchFn)();
      all[title] = results;
      printTable(title, results);
    } catch (error) {
      failures++;
      all[title] = { error: String(error) };
      console.log(`\n## ${title}\nFAILED: ${(error as Error).message}`);
    }
  }
}
if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(all, null, 2) + "\n");
if (failures > 0) Deno.exit(1);
