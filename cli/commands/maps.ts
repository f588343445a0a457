/**
 * `skiff maps`: every BPF map pinned under the node's pin dir with its size and pressure
 * (entries / max entries), so a map about to fill (new flows dropped, Services refused) shows
 * before it bites. Programs and links pinned beside the maps are skipped.
 * @module
 */
import { type PinnedMapSummary, summarizePinnedMap } from "../../agent/bpf/bpf_map.ts";
import { BpfError } from "../../agent/bpf/errno.ts";
import { type Command, EXIT_OK } from "../command.ts";
import { NODE_CONFIG_HELP } from "../node_config.ts";
import { OUTPUT_HELP, printView } from "../output.ts";
import { parseViewArgs } from "./view_common.ts";

/** Pressure above which a map is marked in the table (and `warning` is set in JSON). */
export const PRESSURE_WARNING = 0.8;

const HELP = `Usage: skiff maps [-o table|json] [--config PATH] [--pin-dir DIR]

Lists every BPF map pinned under the node's pin dir (config pinDir): type, key and value
size, max entries, current entries and pressure (entries/max). A "!" after the pressure
marks maps above ${PRESSURE_WARNING * 100}% full. Array maps always hold max entries: their
pressure is "-". ENTRIES "?" means the map type cannot be walked.

Options:
${OUTPUT_HELP}
${NODE_CONFIG_HELP}
  -h, --help             this help`;

/** One row of `skiff maps -o json`. */
export interface MapRow {
  readonly name: string;
  readonly pin: string;
  readonly id: number;
  readonly type: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  /** null when the map type cannot be walked. */
  readonly entries: number | null;
  /** entries / maxEntries as a fraction (0..1); null for fixed-size (array) maps. */
  readonly pressure: number | null;
  readonly warning: boolean;
  readonly error?: string;
}

const FIXED_SIZE = new Set(["array", "percpu_array", "prog_array", "cgroup_array", "arena"]);

/** The pins (files, recursively) under `dir`, sorted; a missing dir is a clear error. */
async function pinsUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else if (e.isFile) out.push(`${d}/${e.name}`);
    }
  };
  try {
    await walk(dir);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `pin dir ${dir} does not exist: no agent has loaded BPF programs for this node (check --pin-dir or the config's pinDir, and that bpffs is mounted at /sys/fs/bpf)`,
      );
    }
    throw new Error(`cannot read pin dir ${dir}: ${(error as Error).message}`);
  }
  return out.sort();
}

function toRow(dir: string, m: PinnedMapSummary): MapRow {
  const fixed = FIXED_SIZE.has(m.info.typeName);
  const pressure = fixed || m.entries === undefined || m.info.maxEntries === 0
    ? null
    : m.entries / m.info.maxEntries;
  return {
    name: m.path.slice(dir.length + 1),
    pin: m.path,
    id: m.info.id,
    type: m.info.typeName,
    keySize: m.info.keySize,
    valueSize: m.info.valueSize,
    maxEntries: m.info.maxEntries,
    entries: m.entries ?? null,
    pressure,
    warning: pressure !== null && pressure > PRESSURE_WARNING,
    ...(m.entriesError && { error: m.entriesError }),
  };
}

/** Reads every map pinned under `dir`. */
export async function readMaps(dir: string): Promise<MapRow[]> {
  const rows: MapRow[] = [];
  for (const pin of await pinsUnder(dir.replace(/\/+$/, ""))) {
    let summary: PinnedMapSummary | undefined;
    try {
      summary = summarizePinnedMap(pin);
    } catch (error) {
      // A file that is no BPF object (EACCES/EINVAL) or vanished meanwhile is not a map.
      if (error instanceof BpfError) continue;
      throw error;
    }
    if (summary) rows.push(toRow(dir.replace(/\/+$/, ""), summary));
  }
  return rows;
}

function percent(p: number | null): string {
  return p === null ? "-" : `${(p * 100).toFixed(p > 0 && p < 0.001 ? 3 : 1)}%`;
}

/** `skiff maps`. */
export const mapsCommand: Command = {
  name: "maps",
  summary: "BPF maps pinned for this node: sizes and pressure",
  async run(args) {
    const parsed = await parseViewArgs(args, HELP);
    if (!parsed) return EXIT_OK;
    const { format, config } = parsed;
    const maps = await readMaps(config.pinDir);
    printView(format, { pinDir: config.pinDir, maps }, {
      headers: ["NAME", "TYPE", "KEY", "VALUE", "MAX", "ENTRIES", "PRESSURE"],
      rows: maps.map((m) => [
        m.name,
        m.type,
        String(m.keySize),
        String(m.valueSize),
        String(m.maxEntries),
        m.entries === null ? "?" : String(m.entries),
        m.warning ? `${percent(m.pressure)} !` : percent(m.pressure),
      ]),
      empty: `No BPF maps pinned under ${config.pinDir}.`,
    });
    return EXIT_OK;
  },
};
