/**
 * The iptables Service data plane: converges kube-proxy-style chains (iptables_rules.ts) into
 * one namespace with `iptables-restore --noflush`, rewriting only the chains that changed, and
 * clears UDP conntrack entries of endpoints that left (otherwise a UDP "flow" keeps going to a
 * dead endpoint until its entry times out).
 *
 * How it works: the first sync (and the first after refresh()) reads our chains from the
 * kernel with -save, so a restart is a normal sync and nothing is flushed; later syncs diff
 * against what this object last wrote, re-reading the kernel every `verifyIntervalSeconds` so
 * outside edits are repaired. Unchanged Services are not even re-rendered. On iptables-nft,
 * whose restore is quadratic per transaction, many new chains are staged in batches before the
 * atomic dispatch restore, and many removed chains are deleted with one `nft -f`.
 * @module
 */
import type { Dataplane, SyncReport } from "../dataplane.ts";
import { type ServiceEntry, serviceKey, type ServiceSnapshot } from "../lb/model.ts";
import { run } from "../net/exec.ts";
import { detectIptablesBackend, type IptablesBackend } from "./iptables_backend.ts";
import {
  NFT_BULK_CHAINS,
  nftDeleteChains,
  planConverge,
  removeChains,
} from "./iptables_converge.ts";
import {
  baseChains,
  dispatchChains,
  isServiceChain,
  MARK_MASQ_CHAIN,
  serviceJumps,
  type ServiceRules,
  serviceRules,
  type ServiceRulesContext,
  type UdpFrontend,
} from "./iptables_rules.ts";
import {
  type OwnedChain,
  renderRestore,
  renderRuleSpec,
  type Table,
  type TableEdit,
} from "./iptables_text.ts";
import { checkSnapshot } from "./service_check.ts";

/** Options for {@linkcode createIptablesDataplane}. */
export interface IptablesDataplaneOptions extends ServiceRulesContext {
  /** Namespace to program (/run/netns/NAME); default the current one. */
  readonly netns?: string;
  /** A backend to use instead of detecting legacy vs nft. */
  readonly backend?: IptablesBackend;
  /**
   * Re-read the kernel at most this often (seconds; default 60), so a chain flushed or edited
   * from outside is repaired by the next sync after that. 0 reads it on every sync.
   */
  readonly verifyIntervalSeconds?: number;
}

interface CachedService {
  readonly fingerprint: string;
  readonly rules: ServiceRules;
  /** Rendered specs per owned chain, and a signature of everything the Service writes. */
  readonly rendered: Map<string, string[]>;
  readonly signature: string;
}

const chainKey = (table: Table, name: string) => `${table}/${name}`;

/** Chains per restore when staging new chains on iptables-nft. */
const STAGE_BATCH = 1000;

function renderChains(chains: readonly OwnedChain[]): Map<string, string[]> {
  return new Map(chains.map((c) => [chainKey(c.table, c.name), c.rules.map(renderRuleSpec)]));
}

/** Detects the namespace's iptables flavour (unless given) and returns the data plane. */
export async function createIptablesDataplane(
  options: IptablesDataplaneOptions,
): Promise<IptablesDataplane> {
  const backend = options.backend ?? await detectIptablesBackend({ netns: options.netns });
  return new IptablesDataplane(backend, options, options.verifyIntervalSeconds);
}

/** kube-proxy-style iptables Service data plane for one namespace. */
export class IptablesDataplane implements Dataplane {
  readonly kind = "iptables" as const;
  #applied: Map<string, string[]> | undefined;
  #cache = new Map<string, CachedService>();
  #udp = new Map<string, UdpFrontend>();

  #verifiedAt = 0;
  readonly #verifyMs: number;

  constructor(
    readonly backend: IptablesBackend,
    readonly context: ServiceRulesContext,
    verifyIntervalSeconds = 60,
  ) {
    this.#verifyMs = verifyIntervalSeconds * 1000;
  }

  /** Why this iptables flavour (for `skiff status`). */
  get reason(): string {
    return this.backend.reason;
  }

  /** Makes the next sync re-read the kernel (a periodic full resync repairs outside edits). */
  refresh(): void {
    this.#applied = undefined;
  }

  async sync(snapshot: ServiceSnapshot): Promise<SyncReport> {
    try {
      return await this.#sync(snapshot);
    } catch (error) {
      // The kernel may hold part of the change: read it again next time.
      this.#applied = undefined;
      throw error;
    }
  }

  async #sync(snapshot: ServiceSnapshot): Promise<SyncReport> {
    const started = performance.now();
    checkSnapshot(snapshot);
    const extra = new Map<Table, string[]>();
    let applied = this.#applied;
    if (performance.now() - this.#verifiedAt >= this.#verifyMs) applied = undefined;
    if (applied === undefined) {
      this.#verifiedAt = performance.now();
      const saved = await this.backend.save(["nat", "filter"]);
      applied = new Map();
      for (const table of ["nat", "filter"] as const) {
        for (const [name, specs] of saved.get(table) ?? []) {
          if (isServiceChain(name)) applied.set(chainKey(table, name), specs);
        }
      }
      for (const edit of planConverge(saved, [], serviceJumps()).edits) {
        extra.set(edit.table, [...(edit.extra ?? [])]);
      }
    }

    const cache = new Map<string, CachedService>();
    let changedServices = 0;
    for (const entry of snapshot.services) {
      const cached = this.#cached(entry);
      cache.set(cached.rules.key, cached);
      if (this.#cache.get(cached.rules.key)?.signature !== cached.signature) changedServices++;
    }
    for (const key of this.#cache.keys()) if (!cache.has(key)) changedServices++;

    const desired = new Map<string, string[]>([
      ...renderChains(baseChains()),
      ...renderChains(dispatchChains([...cache.values()].map((c) => c.rules), this.context)),
    ]);
    for (const c of cache.values()) for (const [k, v] of c.rendered) desired.set(k, v);

    const edits = new Map<Table, { write: OwnedChain[]; remove: string[] }>();
    const editOf = (table: Table) => {
      if (!edits.has(table)) edits.set(table, { write: [], remove: [] });
      return edits.get(table)!;
    };
    const written: string[] = [];
    let operations = 0;
    const staged = await this.#stageNewChains(desired, applied);
    for (const key of staged) {
      applied.set(key, desired.get(key)!);
      operations += desired.get(key)!.length + 1;
    }
    for (const [key, specs] of desired) {
      const have = applied.get(key);
      if (have && have.length === specs.length && have.every((l, i) => l === specs[i])) continue;
      const [table, name] = key.split("/") as [Table, string];
      // Rendered specs are written as raw lines: a chain with pre-rendered rules.
      editOf(table).write.push({ table, name, rules: [] });
      written.push(key);
    }
    const removed: string[] = [];
    for (const key of applied.keys()) {
      if (desired.has(key)) continue;
      const [table, name] = key.split("/") as [Table, string];
      editOf(table).remove.push(name);
      removed.push(key);
    }
    // Many removals on nft: the restore only drops the references (dispatch rewritten), then
    // one `nft -f` deletes the now unreachable chains (see nftDeleteChains).
    const bulk = this.backend.mode === "nft" && removed.length > NFT_BULK_CHAINS;
    const tableEdits: TableEdit[] = (["nat", "filter"] as const).map((table) => ({
      table,
      write: editOf(table).write,
      remove: bulk ? [] : editOf(table).remove,
      extra: [
        ...editOf(table).write.flatMap((c) =>
          desired.get(chainKey(table, c.name))!.map((spec) => `-A ${c.name} ${spec}`)
        ),
        ...(extra.get(table) ?? []),
      ],
    }));
    const text = renderRestore(tableEdits);
    await this.backend.restore(text);
    if (bulk) {
      for (const table of ["nat", "filter"] as const) {
        await nftDeleteChains(this.backend, table, editOf(table).remove);
      }
      operations += removed.length;
    }

    for (const key of removed) applied.delete(key);
    for (const key of written) applied.set(key, desired.get(key)!);
    this.#applied = applied;
    this.#cache = cache;
    const conntrackOps = await this.#clearStaleUdp(cache);
    operations += (text === "" ? 0 : text.trimEnd().split("\n").length) + conntrackOps;
    return {
      durationMs: performance.now() - started,
      operations,
      // A restarted instance has no cache: nothing written means nothing changed.
      changedServices: operations === 0 ? 0 : changedServices,
    };
  }

  /**
   * iptables-nft-restore 1.8.9 is quadratic in the size of one transaction (4k Services: 8.2 s
   * in one restore, 1.7 s in batches of 1000 chains). Chains the kernel does not have yet are
   * unreferenced until the dispatch chain jumps to them, so on nft they are created ahead in
   * batches (endpoint chains before the Service chains that jump to them); the final restore,
   * which makes them reachable, stays one atomic transaction. Returns the keys written.
   */
  async #stageNewChains(
    desired: Map<string, string[]>,
    applied: Map<string, string[]>,
  ): Promise<string[]> {
    if (this.backend.mode !== "nft") return [];
    const rank = (name: string) =>
      name === MARK_MASQ_CHAIN
        ? 0
        : name.startsWith("SKIFF-SEP-")
        ? 1
        : /^SKIFF-SV[CL]-/.test(name)
        ? 2
        : name.startsWith("SKIFF-EXT-")
        ? 3
        : -1;
    const fresh = [...desired.keys()]
      .filter((key) => key.startsWith("nat/") && !applied.has(key) && rank(key.slice(4)) >= 0)
      .sort((a, b) => rank(a.slice(4)) - rank(b.slice(4)));
    if (fresh.length < STAGE_BATCH) return [];
    for (let i = 0; i < fresh.length; i += STAGE_BATCH) {
      const batch = fresh.slice(i, i + STAGE_BATCH).map((key) => key.slice(4));
      await this.backend.restore(renderRestore([{
        table: "nat",
        write: batch.map((name) => ({ table: "nat", name, rules: [] })),
        extra: batch.flatMap((name) =>
          desired.get(`nat/${name}`)!.map((spec) => `-A ${name} ${spec}`)
        ),
      }]));
    }
    return fresh;
  }

  #cached(entry: ServiceEntry): CachedService {
    const fingerprint = JSON.stringify(entry);
    const old = this.#cache.get(serviceKey(entry.service));
    if (old?.fingerprint === fingerprint) return old;
    const rules = serviceRules(entry, this.context);
    const rendered = renderChains(rules.chains);
    const signature = JSON.stringify([
      [...rendered],
      rules.services.map(renderRuleSpec),
      rules.nodePorts.map(renderRuleSpec),
      rules.reject.map(renderRuleSpec),
    ]);
    return { fingerprint, rules, rendered, signature };
  }

  /** `conntrack -D` for UDP flows whose endpoint may no longer take new flows. */
  async #clearStaleUdp(cache: Map<string, CachedService>): Promise<number> {
    const now = new Map<string, UdpFrontend>();
    for (const c of cache.values()) {
      for (const [port, front] of c.rules.udp) now.set(`${c.rules.key}|${port}`, front);
    }
    const commands: string[][] = [];
    for (const [key, before] of this.#udp) {
      const after = new Set(now.get(key)?.targets ?? []);
      for (const target of before.targets) {
        if (after.has(target)) continue;
        const ip = target.slice(0, target.lastIndexOf(":"));
        for (const vip of before.ips) {
          commands.push([
            "conntrack",
            "-D",
            "-p",
            "udp",
            "--orig-dst",
            vip,
            "--orig-port-dst",
            String(before.port),
            "--dst-nat",
            ip,
          ]);
        }
        if (before.nodePort !== undefined) {
          commands.push([
            "conntrack",
            "-D",
            "-p",
            "udp",
            "--orig-port-dst",
            String(before.nodePort),
            "--dst-nat",
            ip,
          ]);
        }
      }
    }
    this.#udp = now;
    for (const argv of commands) {
      // Exit 1 means "0 flow entries deleted": nothing to clear.
      const out = await run(argv, { netns: this.backend.netns, allowFailure: true });
      if (out.code > 1) throw new Error(`${argv.join(" ")}: ${out.stderr.trim()}`);
    }
    return commands.length;
  }

  async uninstall(): Promise<void> {
    await removeChains(this.backend, ["nat", "filter"], isServiceChain);
    this.#applied = undefined;
    this.#cache.clear();
    this.#udp.clear();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
