/**
 * The LB map plan: pure functions from a Service snapshot to the contents the BPF maps must
 * hold, and from (plan, what the maps hold) to the minimal list of writes.
 *
 * How it works: `planLb` turns Services into frontends (ClusterIPs, external and LoadBalancer
 * IPs, NodePorts on each node address) with their new-flow backends, named by identity
 * ("10.244.1.5:8080/TCP"), not by id. `assignIds` gives each backend and frontend an id,
 * reusing the ids the maps already hold (ids live in the maps, never only in memory, so a
 * restarted agent finds the same ones) and never reusing an id freed in the same sync.
 * `diffLb` then compares entry by entry; a frontend's Maglev table is rewritten only when its
 * backend ids changed (or, in a full diff, when the caller finds the kernel's table wrong), and
 * is named by its source, not built: the writer builds tables one at a time.
 * @module
 */
import {
  type Endpoint,
  endpointsForNewFlows,
  type ServiceEntry,
  serviceKey,
  type ServiceSnapshot,
} from "./model.ts";
import { buildMaglevTable, isPrime, type MaglevBackend } from "./maglev.ts";
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

/**
 * What the pinned maps hold now (Maglev tables only by key: they are 64 KiB each), with the
 * two reverse indexes the diff needs. The reconciler owns and updates one in place.
 */
export interface LbState {
  readonly services: Map<string, { key: SvcKey; value: SvcValue }>;
  readonly backends: Map<number, BackendValue>;
  readonly revNat: Map<number, RevNatValue>;
  readonly maglevIds: Set<number>;
  snatAddr?: string;
  /** Backend identity ("ip:port/proto") -> backend id. */
  readonly backendIndex: Map<string, number>;
  /** Frontend id ("vip:port/proto") -> rev-NAT id. */
  readonly frontendIndex: Map<string, number>;
  /**
   * Every backend (frontend) id below this one is in use, so a search for the lowest free id
   * starts here instead of at 1 (at 100k backends, a scan from 1 costs milliseconds).
   */
  backendIdFloor?: number;
  frontendIdFloor?: number;
}

/** Builds an LbState (and its indexes) from map contents. */
export function makeLbState(contents: {
  services?: Iterable<[string, { key: SvcKey; value: SvcValue }]>;
  backends?: Iterable<[number, BackendValue]>;
  revNat?: Iterable<[number, RevNatValue]>;
  maglevIds?: Iterable<number>;
  snatAddr?: string;
}): LbState {
  const backends = new Map(contents.backends ?? []);
  const revNat = new Map(contents.revNat ?? []);
  const backendIndex = new Map<string, number>();
  for (const [id, v] of backends) backendIndex.set(backendId(v), id);
  const frontendIndex = new Map<string, number>();
  for (const [id, v] of revNat) frontendIndex.set(frontendId(v.vip, v.port, v.proto), id);
  return {
    services: new Map(contents.services ?? []),
    backends,
    revNat,
    maglevIds: new Set(contents.maglevIds ?? []),
    snatAddr: contents.snatAddr,
    backendIndex,
    frontendIndex,
  };
}

/** Limits a diff to some frontends and backends (the ones of changed Services). */
export interface DiffScope {
  readonly frontends: ReadonlySet<string>;
  readonly backends: ReadonlySet<string>;
}

/**
 * What a Maglev table is built from. A diff names tables by source instead of holding them
 * (64 KiB each: 10k of them would be 655 MB); the writer builds each one into a reused buffer
 * just before writing it. Frontends with the same backends share one source object.
 */
export interface MaglevSource {
  /** Backends (id and identity key), sorted by id; none means an all-zero table. */
  readonly backends: readonly MaglevBackend[];
  /** Table size (the build's SKIFF_MAGLEV_M). */
  readonly size: number;
}

/** Builds the table of `source` (into `into` when given: a Uint32Array of source.size). */
export function maglevTableOf(source: MaglevSource, into?: Uint32Array): Uint32Array {
  if (source.backends.length > 0) return buildMaglevTable(source.backends, source.size, into);
  if (!into) return new Uint32Array(source.size);
  if (into.length !== source.size) {
    throw new RangeError(`Maglev output buffer has ${into.length} slots, not ${source.size}`);
  }
  return into.fill(0);
}

/** Options of {@linkcode diffLb}. */
export interface DiffOptions {
  /**
   * Asked, in a diff without scope, for each frontend whose table is in the maps and whose
   * slots already name the planned backends: false makes the diff rewrite that table.
   */
  readonly tableMatches?: (revNatId: number, source: MaglevSource) => boolean;
}

/** Map writes in the order they must be applied (make before break). */
export interface LbDiff {
  readonly backendUpserts: [number, BackendValue][];
  readonly revNatUpserts: [number, RevNatValue][];
  /** Tables to write, by source (frontends with the same backends share one). */
  readonly maglevUpserts: [number, MaglevSource][];
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
  /** Id floors (see LbState) once the diff is applied, before its deletes are counted. */
  readonly idFloors?: { readonly backends: number; readonly frontends: number };
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

/** One Service's share of the plan. */
export interface ServicePlan {
  readonly frontends: readonly PlannedFrontend[];
  /** Its backends, one per identity, flags as this Service sees them. */
  readonly backends: readonly PlannedBackend[];
}

/** Plans one (validated) Service entry on one node. */
export function planService(entry: ServiceEntry, node: NodeContext): ServicePlan {
  const { service, endpoints } = entry;
  const name = serviceKey(service);
  const affinity = service.sessionAffinity === "ClientIP";
  const frontends = new Map<string, PlannedFrontend>();
  const backends = new Map<string, PlannedBackend>();
  for (const port of service.ports) {
    const proto = PROTO[port.protocol];
    if (proto === undefined) {
      throw new TypeError(`${name}: unknown protocol "${port.protocol}"`);
    }
    const portOf = (e: Endpoint) => e.ports?.[port.name] ?? port.targetPort;
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
          `${name}: frontend ${vip}:${frontPort}/${port.protocol} is listed twice`,
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
  return { frontends: [...frontends.values()], backends: [...backends.values()] };
}

/**
 * Adds one Service's plan into a whole plan's maps. A backend shared by Services is
 * terminating (or local) if any of them says so. Throws on a frontend another Service has.
 */
export function mergeServicePlan(
  into: { frontends: Map<string, PlannedFrontend>; backends: Map<string, PlannedBackend> },
  part: ServicePlan,
): void {
  for (const f of part.frontends) {
    const other = into.frontends.get(f.id);
    if (other) throw new TypeError(`${f.service}: frontend ${f.id} is also ${other.service}'s`);
  }
  for (const f of part.frontends) into.frontends.set(f.id, f);
  for (const b of part.backends) {
    const prior = into.backends.get(b.id);
    into.backends.set(
      b.id,
      prior ? { id: b.id, value: { ...b.value, flags: b.value.flags | prior.value.flags } } : b,
    );
  }
}

/** Computes the desired frontends and backends of a (validated) snapshot on one node. */
export function planLb(snapshot: ServiceSnapshot, node: NodeContext): LbPlan {
  const frontends = new Map<string, PlannedFrontend>();
  const backends = new Map<string, PlannedBackend>();
  for (const entry of snapshot.services) {
    mergeServicePlan({ frontends, backends }, planService(entry, node));
  }
  return { frontends, backends, snatAddr: node.nodeIPs[0] ?? "0.0.0.0" };
}

function sameBackend(a: BackendValue, b: BackendValue): boolean {
  return a.addr === b.addr && a.port === b.port && a.proto === b.proto && a.flags === b.flags;
}

function sameSvc(a: SvcValue, b: SvcValue): boolean {
  return a.backend_id === b.backend_id && a.rev_nat_id === b.rev_nat_id &&
    a.affinity_timeout === b.affinity_timeout && a.count === b.count && a.flags === b.flags;
}

/** The backend slots (1..) a frontend has in `state`, in slot order. */
function existingSlots(state: LbState, vip: string, port: number, proto: number): SvcValue[] {
  const out: SvcValue[] = [];
  for (let slot = 1;; slot++) {
    const e = state.services.get(svcKeyId({ vip, dport: port, proto, slot }));
    if (!e) return out;
    out.push(e.value);
  }
}

/**
 * Hands out ids: an identity the maps know keeps its id; a new one gets the lowest id that
 * is neither in the maps nor given out in this diff (so an id freed by this sync is not
 * reused while old entries may still name it).
 */
class IdAllocator {
  #next: number;
  #given = new Map<string, number>();
  #taken = new Set<number>();
  constructor(
    readonly index: ReadonlyMap<string, number>,
    readonly inUse: (id: number) => boolean,
    floor = 1,
  ) {
    this.#next = floor;
  }
  /** Every id below this one is in use or given out by this allocator. */
  get floor(): number {
    return this.#next;
  }
  idOf(key: string): number {
    const have = this.index.get(key) ?? this.#given.get(key);
    if (have !== undefined) return have;
    while (this.inUse(this.#next) || this.#taken.has(this.#next)) this.#next++;
    this.#taken.add(this.#next);
    this.#given.set(key, this.#next);
    return this.#next;
  }
}

/**
 * The writes that turn `state` into `plan`; empty lists when they already agree. With a
 * `scope`, only those frontends and backends are compared (the caller promises the rest
 * agree); without one, everything, including entries no plan names.
 */
export function diffLb(
  plan: LbPlan,
  state: LbState,
  maglevSize = MAGLEV_M,
  scope?: DiffScope,
  options: DiffOptions = {},
): LbDiff {
  const changed = new Set<string>();
  const backendIds = new IdAllocator(
    state.backendIndex,
    (id) => state.backends.has(id),
    state.backendIdFloor,
  );
  const svcRevNat = scope
    ? undefined
    : new Set([...state.services.values()].map((s) => s.value.rev_nat_id));
  const frontendIds = new IdAllocator(
    state.frontendIndex,
    (id) => state.revNat.has(id) || state.maglevIds.has(id) || (svcRevNat?.has(id) ?? false),
    state.frontendIdFloor,
  );

  const backendUpserts: [number, BackendValue][] = [];
  const backendDeletes: number[] = [];
  for (const key of scope ? scope.backends : plan.backends.keys()) {
    const planned = plan.backends.get(key);
    if (!planned) {
      const gone = state.backendIndex.get(key);
      if (gone !== undefined) backendDeletes.push(gone);
      continue;
    }
    const id = backendIds.idOf(key);
    const have = state.backends.get(id);
    if (!have || !sameBackend(have, planned.value)) backendUpserts.push([id, planned.value]);
  }
  if (!scope) {
    for (const [id, v] of state.backends) {
      if (!plan.backends.has(backendId(v))) backendDeletes.push(id);
    }
  }

  const revNatUpserts: [number, RevNatValue][] = [];
  const maglevUpserts: [number, MaglevSource][] = [];
  const slotUpserts: [SvcKey, SvcValue][] = [];
  const frontUpserts: [SvcKey, SvcValue][] = [];
  const frontDeletes: SvcKey[] = [];
  const slotDeletes: SvcKey[] = [];
  const revNatDeletes: number[] = [];
  const maglevDeletes: number[] = [];
  const newFlowBackends = new Map<number, Set<number>>();
  const tables = new Map<string, MaglevSource>();
  const wantedRevNat = new Set<number>();
  for (const fid of scope ? scope.frontends : plan.frontends.keys()) {
    const f = plan.frontends.get(fid);
    if (!f) {
      const oldId = state.frontendIndex.get(fid);
      const rn = oldId === undefined ? undefined : state.revNat.get(oldId);
      if (oldId === undefined || !rn) continue;
      const base = { vip: rn.vip, dport: rn.port, proto: rn.proto };
      if (state.services.has(svcKeyId({ ...base, slot: 0 }))) {
        frontDeletes.push({ ...base, slot: 0 });
      }
      existingSlots(state, rn.vip, rn.port, rn.proto).forEach((_, i) =>
        slotDeletes.push({ ...base, slot: i + 1 })
      );
      revNatDeletes.push(oldId);
      if (state.maglevIds.has(oldId)) maglevDeletes.push(oldId);
      changed.add(fid);
      continue;
    }
    const revNatId = frontendIds.idOf(fid);
    wantedRevNat.add(revNatId);
    const rn = state.revNat.get(revNatId);
    if (!rn || rn.vip !== f.vip || rn.port !== f.port || rn.proto !== f.proto) {
      revNatUpserts.push([revNatId, { vip: f.vip, port: f.port, proto: f.proto }]);
      changed.add(f.service);
    }
    const beIds = f.backends.map((b) => backendIds.idOf(b));
    newFlowBackends.set(revNatId, new Set(beIds));
    const sortedIds = [...beIds].sort((a, b) => a - b);
    const slots = existingSlots(state, f.vip, f.port, f.proto);
    const have = slots.map((v) => v.backend_id).sort((a, b) => a - b);
    const sameSet = have.length === sortedIds.length && have.every((v, i) => v === sortedIds[i]);
    // frontends with the same backends (ports of one Service, ClusterIP and NodePort…)
    // share one source, so the writer builds their table once: a table costs milliseconds
    const sourceOf = (): MaglevSource => {
      const tableKey = sortedIds.join(",");
      let source = tables.get(tableKey);
      if (!source) {
        // what buildMaglevTable would refuse is refused here, before anything is written
        if (!isPrime(maglevSize)) {
          throw new RangeError(`Maglev table size ${maglevSize} is not a prime`);
        }
        if (sortedIds.length >= maglevSize) {
          throw new RangeError(
            `${f.service}: frontend ${f.id} has ${sortedIds.length} backends, a Maglev table of ${maglevSize} holds fewer`,
          );
        }
        const keyOf = new Map(f.backends.map((b, i) => [beIds[i], b]));
        source = {
          backends: sortedIds.map((id) => ({ id, key: keyOf.get(id)! })),
          size: maglevSize,
        };
        tables.set(tableKey, source);
      }
      return source;
    };
    if (
      !sameSet || !state.maglevIds.has(revNatId) ||
      (!scope && options.tableMatches && !options.tableMatches(revNatId, sourceOf()))
    ) {
      maglevUpserts.push([revNatId, sourceOf()]);
      changed.add(f.service);
    }
    const base = { vip: f.vip, dport: f.port, proto: f.proto };
    sortedIds.forEach((beId, i) => {
      const value: SvcValue = {
        backend_id: beId,
        rev_nat_id: revNatId,
        affinity_timeout: 0,
        count: 0,
        flags: 0,
      };
      const cur = slots[i];
      if (!cur || !sameSvc(cur, value)) {
        slotUpserts.push([{ ...base, slot: i + 1 }, value]);
        changed.add(f.service);
      }
    });
    for (let slot = sortedIds.length + 1; slot <= slots.length; slot++) {
      slotDeletes.push({ ...base, slot });
      changed.add(f.service);
    }
    const value: SvcValue = {
      backend_id: 0,
      rev_nat_id: revNatId,
      affinity_timeout: f.affinityTimeout,
      count: sortedIds.length,
      flags: f.flags,
    };
    const cur = state.services.get(svcKeyId({ ...base, slot: 0 }));
    if (!cur || !sameSvc(cur.value, value)) {
      frontUpserts.push([{ ...base, slot: 0 }, value]);
      changed.add(f.service);
    }
  }
  if (!scope) {
    // entries no planned frontend owns: removed frontends, or leftovers of a failed sync
    const wanted = new Set<string>();
    for (const f of plan.frontends.values()) {
      wanted.add(svcKeyId({ vip: f.vip, dport: f.port, proto: f.proto, slot: 0 }));
      for (let i = 1; i <= f.backends.length; i++) {
        wanted.add(svcKeyId({ vip: f.vip, dport: f.port, proto: f.proto, slot: i }));
      }
    }
    const staleSlots = new Set(slotDeletes.map(svcKeyId));
    for (const [id, { key }] of state.services) {
      if (wanted.has(id)) continue;
      if (key.slot === 0) {
        frontDeletes.push(key);
        changed.add(frontendId(key.vip, key.dport, key.proto));
      } else if (!staleSlots.has(id)) slotDeletes.push(key);
    }
    for (const id of state.revNat.keys()) if (!wantedRevNat.has(id)) revNatDeletes.push(id);
    for (const id of state.maglevIds) if (!wantedRevNat.has(id)) maglevDeletes.push(id);
  }
  const snatChanged = !scope && state.snatAddr !== plan.snatAddr;
  return {
    backendUpserts,
    revNatUpserts,
    maglevUpserts,
    serviceUpserts: [...slotUpserts, ...frontUpserts],
    serviceDeletes: [...frontDeletes, ...slotDeletes],
    maglevDeletes,
    revNatDeletes,
    backendDeletes,
    newFlowBackends,
    snatAddr: snatChanged ? plan.snatAddr : undefined,
    changedServices: changed,
    idFloors: { backends: backendIds.floor, frontends: frontendIds.floor },
  };
}

/** Number of map writes and deletes a diff makes (the purge of flows comes on top). */
export function diffOperations(d: LbDiff): number {
  return d.backendUpserts.length + d.revNatUpserts.length + d.maglevUpserts.length +
    d.serviceUpserts.length + d.serviceDeletes.length + d.maglevDeletes.length +
    d.revNatDeletes.length + d.backendDeletes.length + (d.snatAddr !== undefined ? 1 : 0);
}

/** Updates `state` in place to what the maps hold once `diff` is applied. */
export function applyDiffInPlace(state: LbState, diff: LbDiff): void {
  for (const [id, v] of diff.backendUpserts) {
    state.backends.set(id, v);
    state.backendIndex.set(backendId(v), id);
  }
  for (const [id, v] of diff.revNatUpserts) {
    state.revNat.set(id, v);
    state.frontendIndex.set(frontendId(v.vip, v.port, v.proto), id);
  }
  for (const [id] of diff.maglevUpserts) state.maglevIds.add(id);
  for (const [key, value] of diff.serviceUpserts) state.services.set(svcKeyId(key), { key, value });
  for (const key of diff.serviceDeletes) state.services.delete(svcKeyId(key));
  for (const id of diff.maglevDeletes) state.maglevIds.delete(id);
  for (const id of diff.revNatDeletes) {
    const v = state.revNat.get(id);
    if (v && state.frontendIndex.get(frontendId(v.vip, v.port, v.proto)) === id) {
      state.frontendIndex.delete(frontendId(v.vip, v.port, v.proto));
    }
    state.revNat.delete(id);
  }
  for (const id of diff.backendDeletes) {
    const v = state.backends.get(id);
    if (v && state.backendIndex.get(backendId(v)) === id) state.backendIndex.delete(backendId(v));
    state.backends.delete(id);
  }
  if (diff.snatAddr !== undefined) state.snatAddr = diff.snatAddr;
  // ids below a floor are in use: the allocator's floors, lowered to any id this diff freed
  // (a floor only skips candidates: the allocator still checks every id from it on)
  if (diff.idFloors) {
    let backends = diff.idFloors.backends;
    for (const id of diff.backendDeletes) backends = Math.min(backends, id);
    // a frontend id stays in use while its rev-NAT entry or its table is there
    let frontends = diff.idFloors.frontends;
    for (const id of diff.revNatDeletes) frontends = Math.min(frontends, id);
    for (const id of diff.maglevDeletes) frontends = Math.min(frontends, id);
    state.backendIdFloor = backends;
    state.frontendIdFloor = frontends;
  }
}

/** The state the maps hold once `diff` is applied to `state` (a copy; `state` is kept). */
export function applyDiffToState(state: LbState, diff: LbDiff): LbState {
  const next = makeLbState({
    services: state.services,
    backends: state.backends,
    revNat: state.revNat,
    maglevIds: state.maglevIds,
    snatAddr: state.snatAddr,
  });
  next.backendIdFloor = state.backendIdFloor;
  next.frontendIdFloor = state.frontendIdFloor;
  applyDiffInPlace(next, diff);
  return next;
}
