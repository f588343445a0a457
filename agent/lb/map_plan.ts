/**
 * The LB map plan: pure functions from a Service snapshot to the contents the BPF maps must
 * hold, and from (plan, what the maps hold) to the minimal list of writes.
 *
 * How it works: `planLb` turns Services into frontends (ClusterIPs, external and LoadBalancer
 * IPs, NodePorts on each node address) with their new-flow backends, named by identity
 * ("10.244.1.5:8080/TCP"), not by id. `assignIds` gives each backend and frontend an id,
 * reusing the ids the maps already hold (ids live in the maps, never only in memory, so a
 * restarted agent finds the same ones) and never reusing an id freed in the same sync.
 * `diffLb` then compares entry by entry; a frontend's Maglev table is recomputed only when
 * its backend ids changed.
 * @module
 */
import { endpointsForNewFlows, serviceKey, type ServiceSnapshot } from "./model.ts";
import { buildMaglevTable } from "./maglev.ts";
import {
  BackendFlag,
  type BackendValue,
  IPPROTO,
  MAGLEV_M,
  type RevNatValue,
  SvcFlag,
  type SvcKey,
  type SvcValue,
} from "./lb_abi.ts";

/** Where the plan is computed for. */
export interface NodeContext {
  /** This node's name (endpoint.node values equal to it are local). */
  readonly nodeName: string;
  /** Node addresses NodePorts answer on (and the first one is the SNAT address). */
  readonly nodeIPs: readonly string[];
  /** Maglev table size (default MAGLEV_M, which must equal the build's SKIFF_MAGLEV_M). */
  readonly maglevSize?: number;
}

/** A frontend as the plan wants it, backends named by identity. */
export interface PlannedFrontend {
  /** "vip:port/proto", e.g. "10.96.0.10:80/6". */
  readonly id: string;
  readonly vip: string;
  readonly port: number;
  readonly proto: number;
  readonly flags: number;
  readonly affinityTimeout: number;
  /** Backend identities taking new flows, sorted. */
  readonly backends: readonly string[];
  /** "namespace/name" of the Service (for reports). */
  readonly service: string;
}

/** A backend as the plan wants it. */
export interface PlannedBackend {
  /** "ip:port/proto". */
  readonly id: string;
  readonly value: BackendValue;
}

/** The desired LB state by identity. */
export interface LbPlan {
  readonly frontends: ReadonlyMap<string, PlannedFrontend>;
  readonly backends: ReadonlyMap<string, PlannedBackend>;
  /** Address flows to remote backends are SNATed to ("0.0.0.0" when the node has none). */
  readonly snatAddr: string;
}

/** What the pinned maps hold now (Maglev tables only by key: they are 64 KiB each). */
export interface LbState {
  readonly services: ReadonlyMap<string, { key: SvcKey; value: SvcValue }>;
  readonly backends: ReadonlyMap<number, BackendValue>;
  readonly revNat: ReadonlyMap<number, RevNatValue>;
  readonly maglevIds: ReadonlySet<number>;
  readonly snatAddr?: string;
}

/** Map writes in the order they must be applied (make before break). */
export interface LbDiff {
  readonly backendUpserts: [number, BackendValue][];
  readonly revNatUpserts: [number, RevNatValue][];
  readonly maglevUpserts: [number, Uint32Array][];
  /** Backend slots (slot > 0) first, then frontends (slot 0): a frontend never names a missing slot. */
  readonly serviceUpserts: [SvcKey, SvcValue][];
  /** Frontends (slot 0) first, then slots. */
  readonly serviceDeletes: SvcKey[];
  readonly maglevDeletes: number[];
  readonly revNatDeletes: number[];
  readonly backendDeletes: number[];
  /** Frontend rev-NAT id -> backend ids taking new flows after the sync (affinity purge). */
  readonly newFlowBackends: ReadonlyMap<number, ReadonlySet<number>>;
  readonly snatAddr?: string;
  /** Services ("namespace/name", or a frontend id when removed) whose entries changed. */
  readonly changedServices: ReadonlySet<string>;
}

const PROTO: Record<string, number> = { TCP: IPPROTO.TCP, UDP: IPPROTO.UDP };

/** The map key text of a service entry. */
export function svcKeyId(key: SvcKey): string {
  return `${key.vip}:${key.dport}/${key.proto}#${key.slot}`;
}

/** The frontend id of a rev-NAT value or service key. */
export function frontendId(vip: string, port: number, proto: number): string {
  return `${vip}:${port}/${proto}`;
}

/** The backend id text of a backend value. */
export function backendId(b: { addr: string; port: number; proto: number }): string {
  return `${b.addr}:${b.port}/${b.proto}`;
}

/** Computes the desired frontends and backends of a (validated) snapshot on one node. */
export function planLb(snapshot: ServiceSnapshot, node: NodeContext): LbPlan {
  const frontends = new Map<string, PlannedFrontend>();
  const backends = new Map<string, PlannedBackend>();
  for (const { service, endpoints } of snapshot.services) {
    const name = serviceKey(service);
    const affinity = service.sessionAffinity === "ClientIP";
    for (const port of service.ports) {
      const proto = PROTO[port.protocol];
      if (proto === undefined) {
        throw new TypeError(`${name}: unknown protocol "${port.protocol}"`);
      }
      const portOf = (e: (typeof endpoints)[number]) => e.ports?.[port.name] ?? port.targetPort;
      // every endpoint stays a backend (terminating ones keep their flows), flagged
      for (const e of endpoints) {
        const value: BackendValue = {
          addr: e.ip,
          port: portOf(e),
          proto,
          flags: (e.terminating ? BackendFlag.TERMINATING : 0) |
            (e.node === node.nodeName ? BackendFlag.LOCAL : 0),
        };
        const id = backendId(value);
        const prior = backends.get(id);
        // one address shared by Services: terminating if any says so
        if (prior) value.flags |= prior.value.flags;
        backends.set(id, { id, value });
      }
      const newFlows = (local: boolean): string[] => {
        const candidates = local ? endpoints.filter((e) => e.node === node.nodeName) : endpoints;
        return endpointsForNewFlows(candidates)
          .map((e) => backendId({ addr: e.ip, port: portOf(e), proto }))
          .sort();
      };
      const add = (vip: string, frontPort: number, kind: number, local: boolean) => {
        const id = frontendId(vip, frontPort, proto);
        if (frontends.has(id)) {
          throw new TypeError(
            `${name}: frontend ${vip}:${frontPort}/${port.protocol} is also ${
              frontends.get(id)!.service
            }'s`,
          );
        }
        frontends.set(id, {
          id,
          vip,
          port: frontPort,
          proto,
          flags: kind | (local ? SvcFlag.LOCAL : 0) | (affinity ? SvcFlag.AFFINITY : 0),
          affinityTimeout: affinity ? service.affinityTimeoutSeconds : 0,
          backends: newFlows(local),
          service: name,
        });
      };
      const internalLocal = service.internalTrafficPolicy === "Local";
      const externalLocal = service.externalTrafficPolicy === "Local";
      for (const ip of service.clusterIPs) add(ip, port.port, SvcFlag.CLUSTERIP, internalLocal);
      for (const ip of [...service.externalIPs, ...service.loadBalancerIPs]) {
        add(ip, port.port, SvcFlag.EXTERNAL, externalLocal);
      }
      if (port.nodePort !== undefined) {
        for (const ip of node.nodeIPs) add(ip, port.nodePort, SvcFlag.NODEPORT, externalLocal);
      }
    }
  }
  return { frontends, backends, snatAddr: node.nodeIPs[0] ?? "0.0.0.0" };
}

/** Ids for every planned backend and frontend: existing ones kept, new ones the lowest free. */
export function assignIds(
  plan: LbPlan,
  state: LbState,
): { backends: Map<string, number>; frontends: Map<string, number> } {
  const backendIds = new Map<string, number>();
  for (const [id, value] of state.backends) backendIds.set(backendId(value), id);
  const frontendIds = new Map<string, number>();
  for (const [id, value] of state.revNat) {
    frontendIds.set(frontendId(value.vip, value.port, value.proto), id);
  }
  const pick = (
    wanted: Iterable<string>,
    existing: Map<string, number>,
    used: Iterable<number>,
  ): Map<string, number> => {
    const taken = new Set(used);
    const out = new Map<string, number>();
    let next = 1;
    for (const key of wanted) {
      const have = existing.get(key);
      if (have !== undefined) {
        out.set(key, have);
        continue;
      }
      while (taken.has(next)) next++;
      taken.add(next);
      out.set(key, next);
    }
    return out;
  };
  return {
    backends: pick(plan.backends.keys(), backendIds, state.backends.keys()),
    frontends: pick(plan.frontends.keys(), frontendIds, [
      ...state.revNat.keys(),
      ...state.maglevIds,
      ...[...state.services.values()].map((s) => s.value.rev_nat_id),
    ]),
  };
}

function sameBackend(a: BackendValue, b: BackendValue): boolean {
  return a.addr === b.addr && a.port === b.port && a.proto === b.proto && a.flags === b.flags;
}

function sameSvc(a: SvcValue, b: SvcValue): boolean {
  return a.backend_id === b.backend_id && a.rev_nat_id === b.rev_nat_id &&
    a.affinity_timeout === b.affinity_timeout && a.count === b.count && a.flags === b.flags;
}

/** The writes that turn `state` into `plan`; empty lists when they already agree. */
export function diffLb(plan: LbPlan, state: LbState, maglevSize = MAGLEV_M): LbDiff {
  const ids = assignIds(plan, state);
  const changed = new Set<string>();

  const backendUpserts: [number, BackendValue][] = [];
  const wantedBackendIds = new Set<number>();
  for (const [key, planned] of plan.backends) {
    const id = ids.backends.get(key)!;
    wantedBackendIds.add(id);
    const have = state.backends.get(id);
    if (!have || !sameBackend(have, planned.value)) backendUpserts.push([id, planned.value]);
  }
  const backendDeletes = [...state.backends.keys()].filter((id) => !wantedBackendIds.has(id));

  // current slot sets per rev-NAT id, to see whether a Maglev table must change
  const currentSlots = new Map<number, number[]>();
  for (const { key, value } of state.services.values()) {
    if (key.slot === 0) continue;
    const list = currentSlots.get(value.rev_nat_id) ?? [];
    list.push(value.backend_id);
    currentSlots.set(value.rev_nat_id, list);
  }

  const revNatUpserts: [number, RevNatValue][] = [];
  const maglevUpserts: [number, Uint32Array][] = [];
  const slotUpserts: [SvcKey, SvcValue][] = [];
  const frontUpserts: [SvcKey, SvcValue][] = [];
  const wantedSvcKeys = new Set<string>();
  const wantedRevNat = new Set<number>();
  const newFlowBackends = new Map<number, Set<number>>();
  for (const [fid, f] of plan.frontends) {
    const revNatId = ids.frontends.get(fid)!;
    wantedRevNat.add(revNatId);
    const rn = state.revNat.get(revNatId);
    if (!rn || rn.vip !== f.vip || rn.port !== f.port || rn.proto !== f.proto) {
      revNatUpserts.push([revNatId, { vip: f.vip, port: f.port, proto: f.proto }]);
      changed.add(f.service);
    }
    const beIds = f.backends.map((b) => ids.backends.get(b)!);
    newFlowBackends.set(revNatId, new Set(beIds));
    const sortedIds = [...beIds].sort((a, b) => a - b);
    const have = (currentSlots.get(revNatId) ?? []).sort((a, b) => a - b);
    const sameSet = have.length === sortedIds.length && have.every((v, i) => v === sortedIds[i]);
    if (!sameSet || !state.maglevIds.has(revNatId)) {
      const keyOf = new Map(f.backends.map((b, i) => [beIds[i], b]));
      const table = sortedIds.length === 0
        ? new Uint32Array(maglevSize)
        : buildMaglevTable(sortedIds.map((id) => ({ id, key: keyOf.get(id)! })), maglevSize);
      maglevUpserts.push([revNatId, table]);
      changed.add(f.service);
    }
    const base = { vip: f.vip, dport: f.port, proto: f.proto };
    sortedIds.forEach((beId, i) => {
      const key: SvcKey = { ...base, slot: i + 1 };
      const value: SvcValue = {
        backend_id: beId,
        rev_nat_id: revNatId,
        affinity_timeout: 0,
        count: 0,
        flags: 0,
      };
      const id = svcKeyId(key);
      wantedSvcKeys.add(id);
      const cur = state.services.get(id);
      if (!cur || !sameSvc(cur.value, value)) {
        slotUpserts.push([key, value]);
        changed.add(f.service);
      }
    });
    const key: SvcKey = { ...base, slot: 0 };
    const value: SvcValue = {
      backend_id: 0,
      rev_nat_id: revNatId,
      affinity_timeout: f.affinityTimeout,
      count: sortedIds.length,
      flags: f.flags,
    };
    const id = svcKeyId(key);
    wantedSvcKeys.add(id);
    const cur = state.services.get(id);
    if (!cur || !sameSvc(cur.value, value)) {
      frontUpserts.push([key, value]);
      changed.add(f.service);
    }
  }
  const stale = [...state.services.values()].filter((s) => !wantedSvcKeys.has(svcKeyId(s.key)));
  const serviceDeletes = [
    ...stale.filter((s) => s.key.slot === 0),
    ...stale.filter((s) => s.key.slot !== 0),
  ].map((s) => s.key);
  for (const s of stale) {
    if (s.key.slot === 0) changed.add(frontendId(s.key.vip, s.key.dport, s.key.proto));
  }
  const revNatDeletes = [...state.revNat.keys()].filter((id) => !wantedRevNat.has(id));
  const maglevDeletes = [...state.maglevIds].filter((id) => !wantedRevNat.has(id));
  const snatChanged = state.snatAddr !== plan.snatAddr;
  return {
    backendUpserts,
    revNatUpserts,
    maglevUpserts,
    serviceUpserts: [...slotUpserts, ...frontUpserts],
    serviceDeletes,
    maglevDeletes,
    revNatDeletes,
    backendDeletes,
    newFlowBackends,
    snatAddr: snatChanged ? plan.snatAddr : undefined,
    changedServices: changed,
  };
}

/** Number of map writes and deletes a diff makes (the purge of flows comes on top). */
export function diffOperations(d: LbDiff): number {
  return d.backendUpserts.length + d.revNatUpserts.length + d.maglevUpserts.length +
    d.serviceUpserts.length + d.serviceDeletes.length + d.maglevDeletes.length +
    d.revNatDeletes.length + d.backendDeletes.length + (d.snatAddr !== undefined ? 1 : 0);
}

/** The state the maps hold once `diff` is applied to `state` (lets a caller cache it). */
export function applyDiffToState(state: LbState, diff: LbDiff): LbState {
  const services = new Map(state.services);
  const backends = new Map(state.backends);
  const revNat = new Map(state.revNat);
  const maglevIds = new Set(state.maglevIds);
  for (const [id, v] of diff.backendUpserts) backends.set(id, v);
  for (const [id, v] of diff.revNatUpserts) revNat.set(id, v);
  for (const [id] of diff.maglevUpserts) maglevIds.add(id);
  for (const [key, value] of diff.serviceUpserts) services.set(svcKeyId(key), { key, value });
  for (const key of diff.serviceDeletes) services.delete(svcKeyId(key));
  for (const id of diff.maglevDeletes) maglevIds.delete(id);
  for (const id of diff.revNatDeletes) revNat.delete(id);
  for (const id of diff.backendDeletes) backends.delete(id);
  return {
    services,
    backends,
    revNat,
    maglevIds,
    snatAddr: diff.snatAddr ?? state.snatAddr,
  };
}
