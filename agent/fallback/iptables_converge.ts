/**
 * Converging skiff's own iptables chains: read them with -save, compare with the desired
 * rendered rules, rewrite only the chains that differ (one atomic `restore --noflush` that
 * declares only our chains, so foreign rules stay untouched), and keep exactly one jump from
 * each built-in chain. Removal deletes every reference first, then the chains.
 * @module
 */
import type { IptablesBackend } from "./iptables_backend.ts";
import { run } from "../net/exec.ts";
import {
  checkChainName,
  type Jump,
  type OwnedChain,
  renderRestore,
  renderRuleSpec,
  savedChains,
  type SavedTables,
  type Table,
  type TableEdit,
} from "./iptables_text.ts";

/** What a convergence changed. */
export interface ConvergeResult {
  /** "table/chain" of every chain rewritten. */
  readonly rewritten: string[];
  readonly jumpsAdded: number;
  readonly jumpsRemoved: number;
  /** Restore lines written (0 when everything already matched). */
  readonly operations: number;
}

function sameLines(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((line, i) => line === b[i]);
}

/** Pure: the edits that turn `saved` into the desired chains and jumps. */
export function planConverge(
  saved: SavedTables,
  chains: readonly OwnedChain[],
  jumps: readonly Jump[],
): { edits: TableEdit[]; result: ConvergeResult } {
  const tables = new Set<Table>([...chains.map((c) => c.table), ...jumps.map((j) => j.table)]);
  const edits: TableEdit[] = [];
  const rewritten: string[] = [];
  let jumpsAdded = 0, jumpsRemoved = 0;
  for (const table of tables) {
    const have = savedChains(saved, table);
    const write = chains.filter((c) =>
      c.table === table && !sameLines(have.get(c.name), c.rules.map(renderRuleSpec))
    );
    rewritten.push(...write.map((c) => `${table}/${c.name}`));
    const extra: string[] = [];
    for (const jump of jumps.filter((j) => j.table === table)) {
      const spec = renderRuleSpec(jump.rule);
      const count = (have.get(jump.from) ?? []).filter((line) => line === spec).length;
      if (count === 0) {
        extra.push(`-I ${jump.from} 1 ${spec}`);
        jumpsAdded++;
      }
      for (let i = 1; i < count; i++) {
        extra.push(`-D ${jump.from} ${spec}`);
        jumpsRemoved++;
      }
    }
    edits.push({ table, write, extra });
  }
  const text = renderRestore(edits);
  const operations = text === "" ? 0 : text.trimEnd().split("\n").length;
  return { edits, result: { rewritten, jumpsAdded, jumpsRemoved, operations } };
}

/** Reads the kernel's tables and applies the difference in one restore per table set. */
export async function convergeChains(
  backend: IptablesBackend,
  chains: readonly OwnedChain[],
  jumps: readonly Jump[],
): Promise<ConvergeResult> {
  const tables = [...new Set<Table>([...chains.map((c) => c.table), ...jumps.map((j) => j.table)])];
  const saved = await backend.save(tables);
  const { edits, result } = planConverge(saved, chains, jumps);
  await backend.restore(renderRestore(edits));
  return result;
}

/** Pure: edits that delete every rule jumping into `names` (outside them), then the chains. */
export function planRemove(
  saved: SavedTables,
  table: Table,
  names: (name: string) => boolean,
): TableEdit {
  const have = savedChains(saved, table);
  const extra: string[] = [];
  for (const [chain, specs] of have) {
    if (names(chain)) continue;
    for (const spec of specs) {
      const target = /(?:^| )-[jg] (\S+)/.exec(spec)?.[1];
      if (target !== undefined && names(target)) extra.push(`-D ${chain} ${spec}`);
    }
  }
  const remove = [...have.keys()].filter(names);
  return { table, write: [], extra, remove };
}

/** Above this many chains, iptables-nft removals go through `nft -f` (see removeChains). */
export const NFT_BULK_CHAINS = 1000;

/**
 * Deletes (flushes, then deletes) chains of an iptables-nft table with one `nft -f`
 * transaction. The chains must no longer be jumped to from outside the set. iptables-nft-restore
 * 1.8.9 is quadratic in one transaction (30k chains: minutes); nft does 6k chains in 0.2 s.
 */
export async function nftDeleteChains(
  backend: IptablesBackend,
  table: Table,
  names: readonly string[],
): Promise<void> {
  if (names.length === 0) return;
  const script = [
    ...names.map((name) => `flush chain ip ${table} ${checkChainName(name)}`),
    ...names.map((name) => `delete chain ip ${table} ${name}`),
  ].join("\n") + "\n";
  await run(["nft", "-f", "-"], { netns: backend.netns, stdin: script });
}

/**
 * Removes the chains `names` selects from the given tables, with every jump into them. On
 * iptables-nft with many chains, the references go in one restore and the chains in one `nft -f`.
 */
export async function removeChains(
  backend: IptablesBackend,
  tables: readonly Table[],
  names: (name: string) => boolean,
): Promise<number> {
  const saved = await backend.save(tables);
  const edits = tables.map((t) => planRemove(saved, t, names));
  const total = edits.reduce((n, e) => n + (e.remove?.length ?? 0), 0);
  if (backend.mode !== "nft" || total <= NFT_BULK_CHAINS) {
    await backend.restore(renderRestore(edits));
    return total;
  }
  await backend.restore(renderRestore(edits.map((e) => ({ ...e, remove: [] }))));
  for (const edit of edits) await nftDeleteChains(backend, edit.table, edit.remove ?? []);
  return total;
}
