/**
 * The LB reconciler: reads what the pinned maps hold, computes the difference to a snapshot
 * (map_plan.ts) and applies it with batch writes in make-before-break order, then clears the
 * flows of removed backends (UDP conntrack, affinity) so no client keeps sending into a
 * backend that is gone. A restart runs the same code: it reads the maps and writes only what
 * differs, so nothing is flushed.
 * @module
 */
import type { SyncReport } from "../dataplane.ts";
import { type ServiceEntry, serviceKey, type ServiceSnapshot } from "./model.ts";
import { type BackendValue, IPPROTO, type SvcKey, type SvcValue } from "./lb_abi.ts";
import type { MapInfo } from "../bpf/bpf_map.ts";
import type { LbMaps } from "./lb_maps.ts";
import { isFrozenEntry, ServiceValidationError } from "./validate.ts";
import { maglevTableMatches } from "./maglev.ts";
import {
  applyDiffInPlace,
  diffLb,
  diffOperations,
  type DiffScope,
  type LbDiff,
  type LbPlan,
  type LbState,
  type MaglevSource,
  maglevTableOf,
  makeLbState,
  type NodeContext,
  type PlannedBackend,
  type PlannedFrontend,
  planService,
  type ServicePlan,
  svcKeyId,
} from "./map_plan.ts";

/** A sync's report with the LB's own detail. */
export interface LbSyncReport extends SyncReport {
  /** Conntrack and affinity entries removed for removed backends. */
  readonly purged: number;
  /**
   * Backends this sync deleted from the maps (no Service uses them any more), as they were:
   * the data plane destroys connected UDP sockets that still point at them.
   */
  readonly removedBackends: readonly BackendValue[];
}

/** Reads the maps' current contents (Maglev tables by key only). */
export function readLbState(maps: LbMaps): LbState {
  const services: [string, { key: SvcKey; value: SvcValue }][] = [];
  // batch lookups: a chunk of entries per syscall (a restart reads every entry once)
  for (const [key, value] of maps.services.readAll()) {
    services.push([svcKeyId(key), { key, value }]);
  }
  const config = maps.config.get(0);
  return makeLbState({
    services,
    backends: maps.backends.readAll(),
    revNat: maps.revNat.readAll(),
    maglevIds: maps.maglev.keys(),
    snatAddr: config && config.snat_addr !== "0.0.0.0" ? config.snat_addr : undefined,
  });
}

/** A sync that would not fit in the maps; thrown before anything is written. */
export class LbCapacityError extends RangeError {
  constructor(readonly map: string, readonly wanted: number, readonly max: number) {
    super(
      `Cannot sync: map "${map}" would need ${wanted} entries (new ones are written before old ones go), more than its ${max}; build with a larger size`,
    );
    this.name = "LbCapacityError";
  }
}

/**
 * Throws LbCapacityError when a map would overflow while `diff` is applied: new entries are
 * written before old ones are deleted, so the peak is what is there plus what is new.
 */
export function checkCapacity(maps: LbMaps, state: LbState, diff: LbDiff): void {
  const peak = (have: number, newOnes: number, map: { name: string; info(): MapInfo }) => {
    const max = map.info().maxEntries;
    if (have + newOnes > max) throw new LbCapacityError(map.name, have + newOnes, max);
  };
  peak(
    state.services.size,
    diff.serviceUpserts.filter(([k]) => !state.services.has(svcKeyId(k))).length,
    maps.services,
  );
  peak(
    state.backends.size,
    diff.backendUpserts.filter(([id]) => !state.backends.has(id)).length,
    maps.backends,
  );
  peak(
    state.revNat.size,
    diff.revNatUpserts.filter(([id]) => !state.revNat.has(id)).length,
    maps.revNat,
  );
  peak(
    state.maglevIds.size,
    diff.maglevUpserts.filter(([id]) => !state.maglevIds.has(id)).length,
    maps.maglev,
  );
}

/** Applies a diff in make-before-break order; returns the map operations made. */
export function applyLbDiff(maps: LbMaps, diff: LbDiff): number {
  // 1. what new entries will point to: backends, reverse NAT, Maglev tables
  if (diff.backendUpserts.length) maps.backends.updateBatch(diff.backendUpserts);
  if (diff.revNatUpserts.length) maps.revNat.updateBatch(diff.revNatUpserts);
  writeMaglevTables(maps, diff.maglevUpserts);
  if (diff.snatAddr !== undefined) maps.config.set(0, { snat_addr: diff.snatAddr, flags: 0 });
  // 2. slots, then frontends
  if (diff.serviceUpserts.length) maps.services.updateBatch(diff.serviceUpserts);
  // 3. break: frontends first, then what only they pointed to
  if (diff.serviceDeletes.length) maps.services.deleteBatch(diff.serviceDeletes);
  if (diff.maglevDeletes.length) maps.maglev.deleteBatch(diff.maglevDeletes);
  if (diff.revNatDeletes.length) maps.revNat.deleteBatch(diff.revNatDeletes);
  if (diff.backendDeletes.length) maps.backends.deleteBatch(diff.backendDeletes);
  return diffOperations(diff);
}

/**
 * Writes Maglev tables one at a time through one reused buffer: however many a sync writes,
 * one table is alive in memory (a cold sync of 10k frontends would otherwise hold 655 MB).
 * Frontends sharing a source get the table built once.
 */
export function writeMaglevTables(
  maps: LbMaps,
  upserts: readonly (readonly [number, MaglevSource])[],
): void {
  const bySource = new Map<MaglevSource, number[]>();
  for (const [id, source] of upserts) {
    const ids = bySource.get(source);
    if (ids) ids.push(id);
    else bySource.set(source, [id]);
  }
  let buffer: Uint32Array | undefined;
  for (const [source, ids] of bySource) {
    if (buffer?.length !== source.size) buffer = new Uint32Array(source.size);
    const table = maglevTableOf(source, buffer);
    for (const id of ids) maps.maglev.set(id, { backend_id: table });
  }
}

/**
 * Whether the table the maps hold for frontend `revNatId` is the one `source` builds, read
 * one table at a time (a restart never holds all tables).
 *
 * It checks the table's shape, not its every slot (maglevTableMatches: the backends, their
 * ⌊M/N⌋/⌈M/N⌉ share, and the first round of claims), because rebuilding every table to compare
 * would make each restart as slow as a cold sync. That is enough for what can leave a wrong
 * table behind: a table is written before the slots naming its backends (make before break),
 * so a sync killed between the two leaves a table for another backend set (caught: a backend
 * missing or extra, or shares that are off), and a table from a build with other hashes or
 * key order gets other first-round slots. Only a table edited slot by slot by someone else
 * could pass; nothing but this reconciler writes these maps.
 */
export function kernelTableMatches(maps: LbMaps, revNatId: number, source: MaglevSource): boolean {
  if (source.size !== maps.maglevSize) return false;
  if (readBuffer?.length !== source.size) readBuffer = new Uint32Array(source.size);
  const bytes = new Uint8Array(readBuffer.buffer);
  return maps.maglev.getRaw(revNatId, bytes) && maglevTableMatches(readBuffer, source.backends);
}

// One read buffer for kernelTableMatches: a restart reads every table once, one at a time
// (64 KiB heap blocks per read would stay in the process as RSS).
let readBuffer: Uint32Array | undefined;

/**
 * Removes flows that would keep using a backend that is gone: UDP conntrack entries (TCP ones
 * are left to finish), affinity entries of removed backends, of removed frontends, and of
 * backends that no longer take new flows of their frontend. Returns entries removed.
 */
export function purgeFlows(maps: LbMaps, diff: LbDiff): number {
  const removed = new Set(diff.backendDeletes);
  let purged = 0;
  if (removed.size > 0) {
    const keys = [];
    for (const [key, value] of maps.ct.readAll()) {
      if (key.proto === IPPROTO.UDP && removed.has(value.backend_id)) keys.push(key);
    }
    if (keys.length) purged += maps.ct.deleteBatch(keys).count;
  }
  const changedFrontends = new Set(diff.maglevUpserts.map(([id]) => id));
  const goneFrontends = new Set(diff.revNatDeletes);
  if (removed.size > 0 || changedFrontends.size > 0 || goneFrontends.size > 0) {
    const keys = [];
    for (const [key, value] of maps.affinity.readAll()) {
      const allowed = diff.newFlowBackends.get(key.rev_nat_id);
      if (
        removed.has(value.backend_id) || goneFrontends.has(key.rev_nat_id) ||
        (changedFrontends.has(key.rev_nat_id) && allowed && !allowed.has(value.backend_id))
      ) keys.push(key);
    }
    if (keys.length) purged += maps.affinity.deleteBatch(keys).count;
  }
  return purged;
}

/** One Service as last planned: its input and its share of the plan. */
interface PlannedService {
  /** The caller's entry when frozen all the way down (it cannot change), else a private copy. */
  readonly entry: ServiceEntry;
  readonly frozen: boolean;
  readonly plan: ServicePlan;
}

/**
 * The Services using one backend: almost always one, kept without a Map (at 100k backends a
 * Map each costs ~15 MB); a Map from the second user on.
 */
type BackendUsers =
  | { readonly service: string; readonly backend: PlannedBackend }
  | Map<
    string,
    PlannedBackend
  >;

function addUser(all: Map<string, BackendUsers>, service: string, b: PlannedBackend): void {
  const users = all.get(b.id);
  if (users instanceof Map) users.set(service, b);
  else if (!users || users.service === service) all.set(b.id, { service, backend: b });
  else all.set(b.id, new Map([[users.service, users.backend], [service, b]]));
}

function removeUser(all: Map<string, BackendUsers>, id: string, service: string): void {
  const users = all.get(id);
  if (users instanceof Map) {
    users.delete(service);
    if (users.size === 0) all.delete(id);
  } else if (users?.service === service) all.delete(id);
}

/** Whether a Service's input is unchanged since it was planned as `prior`. */
function unchanged(prior: PlannedService, entry: ServiceEntry): boolean {
  return (prior.frozen && prior.entry === entry) || samePlanInput(prior.entry, entry);
}

/** Deep equality of plain JSON-like data (no allocation: cheaper than comparing JSON text). */
export function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  let n = 0;
  for (const k in ra) {
    if (ra[k] === undefined) continue;
    n++;
    if (!sameData(ra[k], rb[k])) return false;
  }
  for (const k in rb) if (rb[k] !== undefined) n--;
  return n === 0;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Whether two (validated) entries plan the same: equality over every model field (the ones
 * planService reads), field by field. A sync compares each of 10k entries with its last
 * version; this costs a tenth of the generic sameData (no for-in walks). Fields outside the
 * model are ignored: no plan reads them. A field added to the model must be added here.
 */
export function samePlanInput(a: ServiceEntry, b: ServiceEntry): boolean {
  if (a === b) return true;
  const s = a.service;
  const t = b.service;
  if (
    s.namespace !== t.namespace || s.name !== t.name ||
    s.sessionAffinity !== t.sessionAffinity ||
    s.affinityTimeoutSeconds !== t.affinityTimeoutSeconds ||
    s.externalTrafficPolicy !== t.externalTrafficPolicy ||
    s.internalTrafficPolicy !== t.internalTrafficPolicy ||
    !sameStrings(s.clusterIPs, t.clusterIPs) || !sameStrings(s.externalIPs, t.externalIPs) ||
    !sameStrings(s.loadBalancerIPs, t.loadBalancerIPs) ||
    s.ports.length !== t.ports.length
  ) return false;
  for (let i = 0; i < s.ports.length; i++) {
    const p = s.ports[i];
    const q = t.ports[i];
    if (
      p.name !== q.name || p.protocol !== q.protocol || p.port !== q.port ||
      p.targetPort !== q.targetPort || p.nodePort !== q.nodePort
    ) return false;
  }
  const e = a.endpoints;
  const f = b.endpoints;
  if (e.length !== f.length) return false;
  for (let i = 0; i < e.length; i++) {
    const x = e[i];
    const y = f[i];
    if (
      x.ip !== y.ip || x.node !== y.node || x.ready !== y.ready || x.serving !== y.serving ||
      x.terminating !== y.terminating || (x.ports !== y.ports && !sameData(x.ports, y.ports))
    ) return false;
  }
  return true;
}

/**
 * Converges one node's LB maps.
 *
 * The first sync reads the maps (ids come from there, so a new process continues where the
 * last one stopped) and diffs everything. Later syncs keep that state and the last plan in
 * memory (only this reconciler writes these maps): a Service whose input did not change is
 * skipped, and only the frontends and backends of changed Services are compared, so one
 * endpoint change costs about as much at 10k Services as at 1.
 */
export class LbReconciler {
  #state: LbState | undefined;
  #services = new Map<string, PlannedService>();
  /** The last snapshot's Services, in its order. */
  #order: PlannedService[] = [];
  #frontends = new Map<string, PlannedFrontend>();
  /** Backend identity -> the Services using it, with their flags for it. */
  #backendUsers = new Map<string, BackendUsers>();

  constructor(readonly maps: LbMaps, readonly node: NodeContext) {}

  /** Converges the maps to `snapshot` (already validated). */
  sync(snapshot: ServiceSnapshot): LbSyncReport {
    const started = performance.now();
    const maglevSize = this.node.maglevSize ?? this.maps.maglevSize;
    const full = this.#state === undefined;
    let state: LbState;
    let diff: LbDiff;
    try {
      state = this.#state ?? readLbState(this.maps);
      const { plan, scope } = this.#plan(snapshot, full);
      // a full diff (start, or after an error) also checks the tables it would keep
      diff = diffLb(plan, state, maglevSize, scope, {
        tableMatches: (id, source) => kernelTableMatches(this.maps, id, source),
      });
      checkCapacity(this.maps, state, diff);
    } catch (error) {
      this.invalidate(); // nothing was written; start over from the maps next time
      throw error;
    }
    // forget the cache if a write fails half-way: the next sync reads the maps again
    this.#state = undefined;
    const removedBackends = diff.backendDeletes.flatMap((id) => {
      const backend = state.backends.get(id);
      return backend ? [backend] : [];
    });
    const operations = applyLbDiff(this.maps, diff);
    applyDiffInPlace(state, diff);
    this.#state = state;
    const purged = purgeFlows(this.maps, diff);
    return {
      durationMs: performance.now() - started,
      operations,
      changedServices: diff.changedServices.size,
      purged,
      removedBackends,
    };
  }

  /** Drops the cached state and plan: the next sync reads the maps and diffs everything. */
  invalidate(): void {
    this.#state = undefined;
    this.#order = [];
    this.#services.clear();
    this.#frontends.clear();
    this.#backendUsers.clear();
  }

  /** The whole plan, and the scope of what changed since the last one (none when `full`). */
  #plan(snapshot: ServiceSnapshot, full: boolean): { plan: LbPlan; scope?: DiffScope } {
    const entries = snapshot.services;
    let changed: [string, ServiceEntry, number][] = [];
    let removed: string[] = [];
    // Fast path: the same Services in the same order as last time (the usual resync), so
    // names are compared in place: no key strings, no set of names, nobody removed.
    let sameOrder = !full && this.#order.length === entries.length;
    for (let i = 0; sameOrder && i < entries.length; i++) {
      const prior = this.#order[i];
      const entry = entries[i];
      if (
        prior.entry.service.name !== entry.service.name ||
        prior.entry.service.namespace !== entry.service.namespace
      ) sameOrder = false;
      // prior.entry is frozen or a private copy: an entry mutated in place counts as changed
      else if (!unchanged(prior, entry)) changed.push([serviceKey(entry.service), entry, i]);
    }
    if (!sameOrder) {
      changed = [];
      const seen = new Set<string>();
      entries.forEach((entry, i) => {
        const key = serviceKey(entry.service);
        if (seen.has(key)) {
          throw new ServiceValidationError(`services[${i}]`, `Service ${key} is defined twice`);
        }
        seen.add(key);
        const prior = this.#services.get(key);
        if (!full && prior && unchanged(prior, entry)) return;
        changed.push([key, entry, i]);
      });
      removed = [...this.#services.keys()].filter((k) => !seen.has(k));
    }
    if (full) {
      this.#services.clear();
      this.#frontends.clear();
      this.#backendUsers.clear();
    }
    const scopeFrontends = new Set<string>();
    const scopeBackends = new Set<string>();
    // take out the old share of every changed or removed Service…
    for (const key of [...removed, ...changed.map(([k]) => k)]) {
      const old = this.#services.get(key);
      if (!old) continue;
      for (const f of old.plan.frontends) {
        this.#frontends.delete(f.id);
        scopeFrontends.add(f.id);
      }
      for (const b of old.plan.backends) {
        removeUser(this.#backendUsers, b.id, key);
        scopeBackends.add(b.id);
      }
      this.#services.delete(key);
    }
    // …and put the new one in
    for (const [key, entry, i] of changed) {
      const part = planService(entry, this.node);
      for (const f of part.frontends) {
        const other = this.#frontends.get(f.id);
        if (other) {
          throw new ServiceValidationError(
            `services[${i}]`,
            `duplicate frontend: ${f.id} of Service ${key} is already Service ${other.service}'s`,
          );
        }
      }
      for (const f of part.frontends) {
        this.#frontends.set(f.id, f);
        scopeFrontends.add(f.id);
      }
      for (const b of part.backends) {
        addUser(this.#backendUsers, key, b);
        scopeBackends.add(b.id);
      }
      const frozen = isFrozenEntry(entry);
      this.#services.set(key, {
        entry: frozen ? entry : structuredClone(entry),
        frozen,
        plan: part,
      });
    }
    if (sameOrder) {
      for (const [key, , i] of changed) this.#order[i] = this.#services.get(key)!;
    } else this.#order = entries.map((e) => this.#services.get(serviceKey(e.service))!);
    const backends = this.#backendsOf(full ? this.#backendUsers.keys() : scopeBackends);
    const plan: LbPlan = {
      frontends: this.#frontends,
      backends,
      snatAddr: this.node.nodeIPs[0] ?? "0.0.0.0",
    };
    return full
      ? { plan }
      : { plan, scope: { frontends: scopeFrontends, backends: scopeBackends } };
  }

  /** Planned backends for the given identities (flags OR-ed over the Services using each). */
  #backendsOf(keys: Iterable<string>): Map<string, PlannedBackend> {
    const out = new Map<string, PlannedBackend>();
    for (const key of [...keys]) {
      const users = this.#backendUsers.get(key);
      if (!users) continue;
      let merged: PlannedBackend | undefined;
      for (const b of users instanceof Map ? users.values() : [users.backend]) {
        merged = merged
          ? { id: key, value: { ...merged.value, flags: merged.value.flags | b.value.flags } }
          : b;
      }
      out.set(key, merged!);
    }
    return out;
  }
}
