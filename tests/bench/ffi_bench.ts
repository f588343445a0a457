/**
 * FFI map bench: update (single and batch), lookup and read-all rates through BpfMap on a
 * bpftool-created pinned hash map (8-byte key, 16-byte value, like a service frontend), side by
 * side with the same operations from C through libbpf, and their ratios. Run alone with
 * `deno run -A tests/bench/ffi_bench.ts`; `deno task bench` imports benchFfi().
 */
import { BpfMap } from "../../agent/bpf/bpf_map.ts";
import { be16, encode, ipv4, pad, struct, u32le, u64le, u8 } from "../../agent/bpf/codec.ts";
import { closeFd, libbpf, objGet, unwrap } from "../../agent/bpf/ffi.ts";
import { run } from "../../agent/net/exec.ts";

/** One measured number. */
export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

const Key = struct("bench_key", { addr: ipv4, port: be16, proto: u8, _pad: pad(1) });
const Value = struct("bench_value", { packets: u64le, id: u32le, flags: u32le });

const ENTRIES = 50_000;
const ROUNDS = 3;

/** Measures FFI map update (single, batch) and lookup rates; creates and removes its own pin dir. */
export async function benchFfi(): Promise<BenchResult[]> {
  const runId = crypto.randomUUID().slice(0, 6);
  const dir = `/sys/fs/bpf/skiff/sk${runId}bench`;
  await ensureBpffs();
  await Deno.mkdir(dir, { recursive: true });
  try {
    const pin = `${dir}/bench_hash`;
    await run([
      "bpftool",
      "map",
      "create",
      pin,
      "type",
      "hash",
      "key",
      "8",
      "value",
      "16",
      "entries",
      String(ENTRIES * 2),
      "name",
      `sk${runId}bench`,
    ]); // deno-fmt-ignore
    using map = BpfMap.open(pin, Key, Value, { expect: { type: "hash" } });
    const entries = Array.from({ length: ENTRIES }, (_, i) =>
      [
        { addr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 80, proto: 6 },
        { packets: BigInt(i), id: i, flags: 0 },
      ] as const);
    const keys = entries.map(([k]) => k);

    const single = best(ROUNDS, () => {
      for (let i = 0; i < ENTRIES; i++) map.set(entries[i][0], entries[i][1]);
    });
    const lookup = best(ROUNDS, () => {
      for (let i = 0; i < ENTRIES; i++) map.get(keys[i]);
    });
    const batch = best(ROUNDS, () => map.updateBatch(entries));
    const readAll = best(ROUNDS, () => map.readAll());
    const iterate = best(ROUNDS, () => {
      for (const _ of map.entries());
    });
    const batchDelete = best(ROUNDS, () => map.deleteBatch(keys), () => map.updateBatch(entries));
    const raw = rawUpdate(pin, entries.map(([k, v]) => [encode(Key, k), encode(Value, v)]));
    const c = await cBaseline(pin);
    return [
      rate("FFI map update, single (hash, 8B key, 16B value)", single),
      rate("FFI map update, single, pre-encoded bytes", raw),
      rate("FFI map lookup, single", lookup),
      rate("FFI map update, batch", batch),
      rate("FFI map delete, batch", batchDelete),
      rate("FFI map read all, lookup batch", readAll),
      rate("FFI map read all, get_next_key + lookup", iterate),
      { name: "C libbpf map update, single (same map)", value: c.single, unit: "elements/s" },
      { name: "C libbpf map lookup, single", value: c.lookup, unit: "elements/s" },
      { name: "C libbpf map update, batch", value: c.batch, unit: "elements/s" },
      ratio("FFI/C rate, update single", ENTRIES / single, c.single),
      ratio("FFI/C rate, lookup single", ENTRIES / lookup, c.lookup),
      ratio("FFI/C rate, update batch", ENTRIES / batch, c.batch),
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function ratio(name: string, ffi: number, c: number): BenchResult {
  return { name, value: Math.round((ffi / c) * 1000) / 1000, unit: "ratio" };
}

const BASELINE_SOURCE = new URL("./map_update_baseline.c", import.meta.url).pathname;
const BASELINE_BINARY = new URL("../../build/bench/map_update_baseline", import.meta.url).pathname;

// The same updates from C (tests/bench/map_update_baseline.c), built on demand into build/.
async function cBaseline(pin: string): Promise<{ single: number; lookup: number; batch: number }> {
  const built = await Deno.stat(BASELINE_BINARY).catch(() => undefined);
  const source = await Deno.stat(BASELINE_SOURCE);
  if (!built || (built.mtime ?? 0) < (source.mtime ?? 0)) {
    await Deno.mkdir(BASELINE_BINARY.replace(/\/[^/]*$/, ""), { recursive: true });
    await run(["clang-19", "-O2", "-Wall", "-o", BASELINE_BINARY, BASELINE_SOURCE, "-lbpf"]);
  }
  const out = await run([BASELINE_BINARY, pin, String(ENTRIES), String(ROUNDS)]);
  return JSON.parse(out.stdout);
}

function rate(name: string, seconds: number): BenchResult {
  return { name, value: Math.round(ENTRIES / seconds), unit: "elements/s" };
}

// The syscall alone, without codecs: tells how much of the single-update cost is encoding.
function rawUpdate(pin: string, pairs: readonly (readonly [Uint8Array, Uint8Array])[]): number {
  const fd = objGet(pin);
  try {
    const lib = libbpf();
    return best(ROUNDS, () => {
      for (let i = 0; i < pairs.length; i++) {
        unwrap(lib.bpf_map_update_elem(fd, pairs[i][0], pairs[i][1], 0n), "update", pin);
      }
    });
  } finally {
    closeFd(fd, pin);
  }
}

/** The fastest of `rounds` runs in seconds (the least disturbed by the other tenants). */
function best(rounds: number, body: () => void, setup?: () => void): number {
  let min = Infinity;
  for (let r = 0; r < rounds; r++) {
    setup?.();
    const t0 = performance.now();
    body();
    min = Math.min(min, (performance.now() - t0) / 1000);
  }
  return min;
}

async function ensureBpffs(): Promise<void> {
  const mounts = await Deno.readTextFile("/proc/self/mounts");
  if (!mounts.split("\n").some((l) => l.split(" ")[1] === "/sys/fs/bpf")) {
    await run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"]);
  }
}

if (import.meta.main) {
  const results = await benchFfi();
  const width = Math.max(...results.map((r) => r.name.length));
  for (const r of results) {
    console.log(
      `${r.name.padEnd(width)}  ${r.value.toLocaleString("en-US").padStart(12)} ${r.unit}`,
    );
  }
}
