/**
 * The LB reconciler: reads what the pinned maps hold, computes the difference to a snapshot
 * (map_plan.ts) and applies it with batch writes in make-before-break order, then clears the
 * flows of removed backends (UDP conntrack, affinity) so no client keeps sending into a
 * backend that is gone. A restart runs the same code: it reads the maps and writes only what
 * differs, so nothing is flushed.
 * @module
 */
import type { SyncReport } from "../dataplane.ts";
import type { ServiceSnapshot } from "./model.ts";
import { IPPROTO, MAGLEV_M, type SvcKey, type SvcValue } from "./lb_abi.ts";
import type { LbMaps } from "./lb_maps.ts";
import {
  applyDiffToState,
  diffLb,
  diffOperations,
  type LbDiff,
  type LbState,
  type NodeContext,
  planLb,
  svcKeyId,
} from "./map_plan.ts";

/** A sync's report with the LB's own detail. */
export interface LbSyncReport extends SyncReport {
  /** Conntrack and affinity entries removed for removed backends. */
  readonly purged: number;
}

/** Reads the maps' current contents (Maglev tables by key only). */
export function readLbState(maps: LbMaps): LbState {
  const services = new Map<string, { key: SvcKey; value: SvcValue }>();
  for (const [key, value] of maps.services.entries()) services.set(svcKeyId(key), { key, value });
  const backends = new Map(maps.backends.entries());
  const revNat = new Map(maps.revNat.entries());
  const maglevIds = new Set(maps.maglev.keys());
  const config = maps.config.get(0);
  return {
    services,
    backends,
    revNat,
    maglevIds,
    snatAddr: config && config.snat_addr !== "0.0.0.0" ? config.snat_addr : undefined,
  };
}

/** Applies a diff in make-before-break order; returns the map operations made. */
export function applyLbDiff(maps: LbMaps, diff: LbDiff): number {
  // 1. what new entries will point to: backends, reverse NAT, Maglev tables
  if (diff.backendUpserts.length) maps.backends.updateBatch(diff.backendUpserts);
  if (diff.revNatUpserts.length) maps.revNat.updateBatch(diff.revNatUpserts);
  for (const [id, table] of diff.maglevUpserts) {
    maps.maglev.set(id, { backend_id: table });
  }
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
 * Removes flows that would keep using a backend that is gone: UDP conntrack entries (TCP ones
 * are left to finish), affinity entries of removed backends, of removed frontends, and of
 * backends that no longer take new flows of their frontend. Returns entries removed.
 */
export function purgeFlows(maps: LbMaps, diff: LbDiff): number {
  const removed = new Set(diff.backendDeletes);
  let purged = 0;
  if (removed.size > 0) {
    const keys = [];
    for (const [key, value] of maps.ct.entries()) {
      if (key.proto === IPPROTO.UDP && removed.has(value.backend_id)) keys.push(key);
    }
    if (keys.length) purged += maps.ct.deleteBatch(keys).count;
  }
  const changedFrontends = new Set(diff.maglevUpserts.map(([id]) => id));
  const goneFrontends = new Set(diff.revNatDeletes);
  if (removed.size > 0 || changedFrontends.size > 0 || goneFrontends.size > 0) {
    const keys = [];
    for (const [key, value] of maps.affinity.entries()) {
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

/**
 * Converges one node's LB maps. The first sync reads the maps (ids come from there, so a new
 * process continues where the last one stopped); later syncs diff against the state the
 * previous sync left, since only this reconciler writes these maps.
 */
export class LbReconciler {
  #state: LbState | undefined;

  constructor(readonly maps: LbMaps, readonly node: NodeContext) {}

  /** Converges the maps to `snapshot` (already validated). */
  sync(snapshot: ServiceSnapshot): LbSyncReport {
    const started = performance.now();
    const plan = planLb(snapshot, this.node);
    const state = this.#state ?? readLbState(this.maps);
    const diff = diffLb(plan, state, this.node.maglevSize ?? MAGLEV_M);
    // forget the cache if a write fails half-way: the next sync reads the maps again
    this.#state = undefined;
    const operations = applyLbDiff(this.maps, diff);
    this.#state = applyDiffToState(state, diff);
    const purged = purgeFlows(this.maps, diff);
    return {
      durationMs: performance.now() - started,
      operations,
      changedServices: diff.changedServices.size,
      purged,
    };
  }

  /** Drops the cached state: the next sync reads the maps again. */
  invalidate(): void {
    this.#state = undefined;
  }
}
