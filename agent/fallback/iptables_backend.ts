/**
 * Which iptables a network namespace uses: iptables-legacy or iptables-nft. Mixing them is a
 * famous outage (two rule sets, both evaluated), so skiff writes with the one that already
 * holds rules, by kube's iptables-wrapper heuristic, and says why (for `skiff status`).
 * @module
 */
import { type CommandOutput, run } from "../net/exec.ts";
import { parseSave, type SavedTables, type Table } from "./iptables_text.ts";

/** The two iptables implementations. */
export type IptablesMode = "legacy" | "nft";

/** Runs one flavour of iptables in one namespace. */
export interface IptablesBackend {
  readonly mode: IptablesMode;
  /** One line saying why this mode was chosen. */
  readonly reason: string;
  /** /run/netns/NAME, or undefined for the current namespace. */
  readonly netns?: string;
  /** `iptables-<mode>-save` of the given tables, parsed. */
  save(tables: readonly Table[]): Promise<SavedTables>;
  /** The raw `-save` text of one table. */
  saveText(table: Table): Promise<string>;
  /** `iptables-<mode>-restore --noflush`: one atomic transaction per table. */
  restore(text: string): Promise<void>;
  /** `iptables-<mode> args…` (with -w). */
  iptables(args: readonly string[], allowFailure?: boolean): Promise<CommandOutput>;
}

/** Options for {@linkcode detectIptablesBackend}. */
export interface DetectOptions {
  /** Network namespace path (/run/netns/NAME); default the current one. */
  netns?: string;
  /** Skip detection and use this mode (the reason says it was configured). */
  force?: IptablesMode;
}

/** What one flavour's -save shows. */
export interface IptablesCensus {
  /** Rule lines ("-A …") across all tables. */
  readonly rules: number;
  /** Chains skiff owns (SKIFF-…). */
  readonly skiffChains: number;
  /** kube's hint chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY). */
  readonly kubeHints: number;
}

/** Counts what a `-save` output holds. */
export function census(saveText: string): IptablesCensus {
  let rules = 0, skiffChains = 0, kubeHints = 0;
  for (const line of saveText.split("\n")) {
    if (line.startsWith("-A ")) rules++;
    else if (line.startsWith(":SKIFF-")) skiffChains++;
    else if (/^:KUBE-(IPTABLES-HINT|KUBELET-CANARY) /.test(line)) kubeHints++;
  }
  return { rules, skiffChains, kubeHints };
}

/**
 * Picks a mode from the two censuses (pure): our own chains first (a restart keeps its choice),
 * then kube's hint chains, then whichever holds more rules; a tie goes to the system default.
 */
export function chooseMode(
  legacy: IptablesCensus,
  nft: IptablesCensus,
  systemDefault: IptablesMode,
): { mode: IptablesMode; reason: string } {
  const counts = `(${legacy.rules} rules in legacy, ${nft.rules} in nft)`;
  if (legacy.skiffChains > 0 && nft.skiffChains === 0) {
    return { mode: "legacy", reason: `skiff chains already in iptables-legacy ${counts}` };
  }
  if (nft.skiffChains > 0 && legacy.skiffChains === 0) {
    return { mode: "nft", reason: `skiff chains already in iptables-nft ${counts}` };
  }
  if (nft.kubeHints > 0) {
    return { mode: "nft", reason: `kube hint chains in iptables-nft ${counts}` };
  }
  if (legacy.kubeHints > 0) {
    return { mode: "legacy", reason: `kube hint chains in iptables-legacy ${counts}` };
  }
  if (legacy.rules > nft.rules) {
    return { mode: "legacy", reason: `iptables-legacy holds more rules ${counts}` };
  }
  if (nft.rules > legacy.rules) {
    return { mode: "nft", reason: `iptables-nft holds more rules ${counts}` };
  }
  return {
    mode: systemDefault,
    reason: `no rules either way ${counts}; using the system's iptables (${systemDefault})`,
  };
}

/** The mode `iptables` (the alternatives link) runs: "(nf_tables)" or "(legacy)". */
export async function systemDefaultMode(): Promise<IptablesMode> {
  const out = await run(["iptables", "--version"], { allowFailure: true });
  return out.stdout.includes("legacy") ? "legacy" : "nft";
}

/** Detects the namespace's iptables flavour and returns a backend bound to it. */
export async function detectIptablesBackend(
  options: DetectOptions = {},
): Promise<IptablesBackend> {
  if (options.force) {
    return makeBackend(options.force, `configured: iptables-${options.force}`, options.netns);
  }
  const [legacyText, nftText, fallback] = await Promise.all([
    run(["iptables-legacy-save"], { netns: options.netns, allowFailure: true }),
    run(["iptables-nft-save"], { netns: options.netns, allowFailure: true }),
    systemDefaultMode(),
  ]);
  const choice = chooseMode(census(legacyText.stdout), census(nftText.stdout), fallback);
  return makeBackend(choice.mode, `iptables-${choice.mode}: ${choice.reason}`, options.netns);
}

/** A backend for a known mode. */
export function makeBackend(
  mode: IptablesMode,
  reason: string,
  netns?: string,
): IptablesBackend {
  const saveTool = `iptables-${mode}-save`;
  const restoreTool = `iptables-${mode}-restore`;
  const tool = `iptables-${mode}`;
  const saveText = async (table: Table): Promise<string> =>
    (await run([saveTool, "-t", table], { netns })).stdout;
  return {
    mode,
    reason,
    netns,
    saveText,
    async save(tables) {
      const texts = await Promise.all(tables.map(saveText));
      return parseSave(texts.join("\n"));
    },
    async restore(text) {
      if (text === "") return;
      await run([restoreTool, "--noflush", "-w", "10"], { netns, stdin: text });
    },
    iptables(args, allowFailure = false) {
      return run([tool, "-w", "10", ...args], { netns, allowFailure });
    },
  };
}
