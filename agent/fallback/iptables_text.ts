/**
 * iptables rules as data and their text form: rendering a rule exactly as `iptables-save`
 * prints it (so a converge can compare desired text with the kernel's), parsing `-save` output
 * into chains, and building `iptables-restore --noflush` input that declares only our chains.
 * @module
 */

/** The tables skiff writes to. */
export type Table = "nat" | "filter";

/** One rule, as data. Rendered in iptables-save's canonical order. */
export interface Rule {
  /** `-s`; a `!` prefix negates ("!10.244.0.0/16"). Plain addresses get "/32". */
  readonly source?: string;
  /** `-d`; a `!` prefix negates. */
  readonly destination?: string;
  readonly protocol?: "tcp" | "udp";
  /** Every skiff rule says why it exists. */
  readonly comment: string;
  /** Further match tokens after the comment, in save order (e.g. ["-m","tcp","--dport","80"]). */
  readonly matches?: readonly string[];
  /** The target and its options (e.g. ["-j","MASQUERADE","--random-fully"]). */
  readonly target: readonly string[];
}

/** A chain skiff owns, with its rules in order. */
export interface OwnedChain {
  readonly table: Table;
  readonly name: string;
  readonly rules: readonly Rule[];
}

/** A rule in a built-in chain that sends packets into one of ours. */
export interface Jump {
  readonly table: Table;
  /** Built-in chain, e.g. POSTROUTING. */
  readonly from: string;
  readonly rule: Rule;
}

const NO_QUOTE = /^[A-Za-z0-9_-]+$/;
const CHAIN_NAME = /^[A-Za-z0-9_-]{1,28}$/;

/** Quotes a string the way iptables-save does (xtables_save_string). */
export function saveQuote(value: string): string {
  if (NO_QUOTE.test(value)) return value;
  return `"${value.replace(/["\\']/g, (c) => `\\${c}`)}"`;
}

function address(flag: string, value: string): string[] {
  const negated = value.startsWith("!");
  const bare = negated ? value.slice(1) : value;
  const withPrefix = bare.includes("/") ? bare : `${bare}/32`;
  return negated ? ["!", flag, withPrefix] : [flag, withPrefix];
}

/** Checks a chain name fits iptables' limit (28 characters) and needs no quoting. */
export function checkChainName(name: string): string {
  if (!CHAIN_NAME.test(name)) {
    throw new TypeError(`chain name "${name}" must be 1-28 characters of [A-Za-z0-9_-]`);
  }
  return name;
}

/** Renders the part after "-A CHAIN " exactly as iptables-save prints it. */
export function renderRuleSpec(rule: Rule): string {
  if (/["\\'\n]/.test(rule.comment)) {
    throw new TypeError(`rule comment ${JSON.stringify(rule.comment)} has a quote or newline`);
  }
  const parts: string[] = [];
  if (rule.source !== undefined) parts.push(...address("-s", rule.source));
  if (rule.destination !== undefined) parts.push(...address("-d", rule.destination));
  if (rule.protocol !== undefined) parts.push("-p", rule.protocol);
  parts.push("-m", "comment", "--comment", saveQuote(rule.comment));
  parts.push(...(rule.matches ?? []), ...rule.target);
  return parts.join(" ");
}

/** Renders "-A CHAIN spec". */
export function renderRule(chain: string, rule: Rule): string {
  return `-A ${chain} ${renderRuleSpec(rule)}`;
}

/** Chains and their rule lines (the text after "-A CHAIN "), per table, from -save output. */
export type SavedTables = Map<string, Map<string, string[]>>;

/** Parses iptables-save output: every chain declared (":NAME ...") with its "-A" lines. */
export function parseSave(text: string): SavedTables {
  const tables: SavedTables = new Map();
  let current: Map<string, string[]> | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) {
      current = new Map();
      tables.set(line.slice(1).trim(), current);
    } else if (!current) {
      continue;
    } else if (line.startsWith(":")) {
      current.set(line.slice(1).split(" ")[0], []);
    } else if (line.startsWith("-A ")) {
      const rest = line.slice(3);
      const space = rest.indexOf(" ");
      const chain = space < 0 ? rest : rest.slice(0, space);
      const spec = space < 0 ? "" : rest.slice(space + 1);
      if (!current.has(chain)) current.set(chain, []);
      current.get(chain)!.push(spec);
    }
  }
  return tables;
}

/** The chains of one table in a parsed save (empty when the table was not listed). */
export function savedChains(saved: SavedTables, table: Table): Map<string, string[]> {
  return saved.get(table) ?? new Map();
}

/** Restore input for one table: declared chains are created or flushed, others untouched. */
export interface TableEdit {
  readonly table: Table;
  /** Chains to (re)write, each fully: declared, then its rules. */
  readonly write: readonly OwnedChain[];
  /** Lines appended after the chain bodies ("-I ...", "-D ...", "-X ..."), in order. */
  readonly extra?: readonly string[];
  /** Chains to delete: declared (flushed) then "-X"ed after everything else. */
  readonly remove?: readonly string[];
}

/** Builds `iptables-restore --noflush` input; returns "" when nothing is to be done. */
export function renderRestore(edits: readonly TableEdit[]): string {
  const out: string[] = [];
  for (const edit of edits) {
    const remove = edit.remove ?? [];
    const extra = edit.extra ?? [];
    if (edit.write.length === 0 && remove.length === 0 && extra.length === 0) continue;
    out.push(`*${edit.table}`);
    for (const chain of edit.write) out.push(`:${checkChainName(chain.name)} - [0:0]`);
    for (const name of remove) out.push(`:${checkChainName(name)} - [0:0]`);
    for (const chain of edit.write) {
      for (const rule of chain.rules) out.push(renderRule(chain.name, rule));
    }
    out.push(...extra);
    for (const name of remove) out.push(`-X ${name}`);
    out.push("COMMIT");
  }
  return out.length === 0 ? "" : out.join("\n") + "\n";
}
