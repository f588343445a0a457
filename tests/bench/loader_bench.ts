/**
 * Loader bench: what the agent pays to (re)start the Go loader and load the counter object:
 * process start to first answer, a cold load (maps created), a warm load (pinned maps reused),
 * and start + load together. Medians of a few runs. Run alone with
 * `deno run -A tests/bench/loader_bench.ts`; `deno task bench` imports benchLoader().
 */
import { buildBpf, buildLoader } from "../../agent/bpf/build.ts";
import { LoaderClient } from "../../agent/bpf/loader_client.ts";

/** One measured number. */
export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

const RUNS = 7;

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Measures loader start and load times; builds what is missing, removes its own pin dirs. */
export async function benchLoader(): Promise<BenchResult[]> {
  const [{ object }] = (await buildBpf()).filter((r) => r.name === "counter");
  const { path } = await buildLoader();
  const pinRoot = `/sys/fs/bpf/skiff/sk${crypto.randomUUID().slice(0, 6)}bench`;
  const start: number[] = [], cold: number[] = [], warm: number[] = [], total: number[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const pinDir = `${pinRoot}${i}`;
      const t0 = performance.now();
      const loader = await LoaderClient.start({ path }); // spawn + hello round trip
      const t1 = performance.now();
      try {
        await loader.load({ object, pinDir }); // creates the maps
        const t2 = performance.now();
        await loader.load({ object, pinDir }); // reuses the pinned maps
        const t3 = performance.now();
        start.push(t1 - t0);
        cold.push(t2 - t1);
        warm.push(t3 - t2);
        total.push(t2 - t0);
      } finally {
        await loader.remove(pinDir).catch(() => {});
        await loader.close();
      }
    }
  } finally {
    for (let i = 0; i < RUNS; i++) {
      await Deno.remove(`${pinRoot}${i}`, { recursive: true }).catch(() => {});
    }
  }
  return [
    { name: "loader start (spawn + hello), median", value: median(start), unit: "ms" },
    { name: "load counter.o, maps created, median", value: median(cold), unit: "ms" },
    { name: "load counter.o, pinned maps reused, median", value: median(warm), unit: "ms" },
    { name: "loader start + first load, median", value: median(total), unit: "ms" },
    { name: "runs", value: RUNS, unit: "" },
  ];
}

if (import.meta.main) {
  const results = await benchLoader();
  const width = Math.max(...results.map((r) => r.name.length));
  console.log(`${"metric".padEnd(width)}  ${"value".padStart(10)}  unit`);
  for (const r of results) {
    console.log(`${r.name.padEnd(width)}  ${r.value.toFixed(2).padStart(10)}  ${r.unit}`);
  }
}
