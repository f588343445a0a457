/**
 * The SubnetStore seam (embedded files, etcd v3) and what both share: lease values, flannel's
 * lease record format and key names, and the pure subnet allocation.
 *
 * How leases work (flannel's rules): a node is identified by its public IP. Acquiring reuses
 * the lease that already carries that IP (same subnet after a restart), else a previously held
 * subnet if still free, else a random pick among the first 100 free subnets — so nodes that
 * start at once rarely collide, and a collision is settled atomically by the store.
 * @module
 */
import {
  type Cidr,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  parseCidr,
  tryParseIpv4,
} from "../net/ipv4.ts";
import { type NetConfig, subnetFitsConfig } from "./net_config.ts";

/** flannel's default lease lifetime. */
export const DEFAULT_LEASE_TTL_MS = 24 * 3600 * 1000;

/** What a node publishes about itself with its lease (flannel's LeaseAttrs, vxlan backend). */
export interface LeaseAttrs {
  /** The node's underlay address: VXLAN packets for its subnet go there. */
  readonly publicIp: string;
  readonly backendType: "vxlan";
  readonly vni: number;
  /** MAC of the node's flannel.<VNI> device, lower case "aa:bb:cc:dd:ee:ff". */
  readonly vtepMac: string;
}

/** A subnet held by a node. */
export interface Lease {
  /** "10.244.1.0/24". */
  readonly subnet: string;
  readonly attrs: LeaseAttrs;
  /**
   * Expiry as epoch ms. Known for leases this store acquired or renewed and in list results;
   * etcd watch events leave it undefined (they carry only an etcd lease id).
   */
  readonly expiresAt?: number;
}

/** One change to the set of leases. */
export type LeaseEvent =
  | { readonly type: "added" | "changed"; readonly lease: Lease }
  | { readonly type: "removed"; readonly subnet: string };

/** What a watch delivers: events since the cursor, or a full snapshot when it cannot resume. */
export type LeaseWatchResult =
  | { readonly kind: "events"; readonly events: readonly LeaseEvent[]; readonly cursor: string }
  | { readonly kind: "snapshot"; readonly leases: readonly Lease[]; readonly cursor: string };

/** A consistent list of leases and the cursor to watch from. */
export interface LeaseSnapshot {
  readonly leases: readonly Lease[];
  readonly cursor: string;
}

/** Options for {@linkcode SubnetStore.acquireLease}. */
export interface AcquireOptions {
  /** A subnet the node held before (from subnet.env or state): taken again when free. */
  readonly previousSubnet?: string;
}

/**
 * Subnet leases shared by the nodes of one cluster. Implementations: embedded_store.ts (files
 * with locking), etcd_store.ts (etcd v3, flannel's layout). One test suite runs against both.
 */
export interface SubnetStore {
  readonly kind: "embedded" | "etcd";
  /** The validated network config; throws NetConfigError (bad) or StoreError (missing). */
  getNetworkConfig(): Promise<NetConfig>;
  /**
   * Stores the config (net-conf.json text or object) unless one is there already; returns the
   * config in force. A bad config is refused before anything is written.
   */
  initNetworkConfig(raw: unknown): Promise<NetConfig>;
  /** Leases a subnet for the node with these attrs (atomic; see the module doc for the rules). */
  acquireLease(attrs: LeaseAttrs, options?: AcquireOptions): Promise<Lease>;
  /** Extends the lease by the store's TTL; throws LeaseLostError if it is gone or taken. */
  renewLease(lease: Lease): Promise<Lease>;
  /** Gives the subnet back (idempotent). */
  releaseLease(subnet: string): Promise<void>;
  /** All valid leases; corrupt records are skipped (and logged through the store's log). */
  listLeases(): Promise<LeaseSnapshot>;
  /**
   * Changes after `cursor` (from listLeases or an earlier result) until `signal` aborts. A
   * dropped connection is resumed from the last cursor; history that is gone gives a snapshot.
   */
  watchLeases(cursor: string, signal: AbortSignal): AsyncIterable<LeaseWatchResult>;
  /** Releases connections and timers (leases stay). */
  close(): Promise<void>;
}

/** The store cannot be reached or answered something unusable. */
export class StoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreError";
  }
}

/** The node's lease expired or another node holds the subnet now. */
export class LeaseLostError extends Error {
  constructor(readonly subnet: string, reason: string) {
    super(`lease for ${subnet} is lost: ${reason}`);
    this.name = "LeaseLostError";
  }
}

/** A lease record that cannot be read (bad key, bad JSON, wrong shape). */
export class LeaseRecordError extends Error {
  constructor(readonly key: string, problem: string) {
    super(`lease record "${key}": ${problem}`);
    this.name = "LeaseRecordError";
  }
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Checks attrs before they are stored; throws TypeError naming the field. */
export function validateLeaseAttrs(attrs: LeaseAttrs): void {
  if (tryParseIpv4(attrs.publicIp) === undefined) {
    throw new TypeError(`lease attrs: publicIp "${attrs.publicIp}" is not an IPv4 address`);
  }
  if (attrs.backendType !== "vxlan") {
    throw new TypeError(`lease attrs: backendType "${attrs.backendType}" is not "vxlan"`);
  }
  if (!Number.isInteger(attrs.vni) || attrs.vni < 1 || attrs.vni > 16777215) {
    throw new TypeError(`lease attrs: vni ${attrs.vni} is out of range 1..16777215`);
  }
  if (!MAC.test(attrs.vtepMac)) {
    throw new TypeError(`lease attrs: vtepMac "${attrs.vtepMac}" is not a lower-case MAC`);
  }
}

/** flannel's key name for a subnet: "10.244.1.0-24". */
export function subnetKey(subnet: string): string {
  return subnet.replace("/", "-");
}

/** The subnet of a key name ("…/10.244.1.0-24" → "10.244.1.0/24"), or undefined. */
export function subnetFromKey(key: string): string | undefined {
  const m = /(\d+\.\d+\.\d+\.\d+)-(\d+)$/.exec(key);
  if (!m) return undefined;
  try {
    return formatCidr(parseCidr(`${m[1]}/${m[2]}`));
  } catch {
    return undefined;
  }
}

/**
 * flannel's lease value: `{"PublicIP":…,"PublicIPv6":null,"BackendType":"vxlan",
 * "BackendData":{"VNI":1,"VtepMAC":…}}` — the field order flannel's Go marshalling gives.
 */
export function encodeLeaseRecord(attrs: LeaseAttrs): string {
  return JSON.stringify({
    PublicIP: attrs.publicIp,
    PublicIPv6: null,
    BackendType: attrs.backendType,
    BackendData: { VNI: attrs.vni, VtepMAC: attrs.vtepMac },
  });
}

/** Reads a lease value written by skiff or flannel; throws LeaseRecordError on anything else. */
export function decodeLeaseRecord(key: string, text: string): LeaseAttrs {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new LeaseRecordError(key, `value is not JSON: ${JSON.stringify(text.slice(0, 60))}`);
  }
  if (typeof raw !== "object" || raw === null) throw new LeaseRecordError(key, "not an object");
  const r = raw as Record<string, unknown>;
  if (typeof r.PublicIP !== "string" || tryParseIpv4(r.PublicIP) === undefined) {
    throw new LeaseRecordError(key, `PublicIP ${JSON.stringify(r.PublicIP)} is not IPv4`);
  }
  if (r.BackendType !== "vxlan") {
    throw new LeaseRecordError(key, `BackendType ${JSON.stringify(r.BackendType)} is not vxlan`);
  }
  const data = r.BackendData as Record<string, unknown> | null | undefined;
  if (typeof data !== "object" || data === null) {
    throw new LeaseRecordError(key, "BackendData is missing");
  }
  const mac = typeof data.VtepMAC === "string" ? data.VtepMAC.toLowerCase() : "";
  const vni = data.VNI ?? 1;
  const attrs: LeaseAttrs = {
    publicIp: r.PublicIP,
    backendType: "vxlan",
    vni: vni as number,
    vtepMac: mac,
  };
  try {
    validateLeaseAttrs(attrs);
  } catch (error) {
    throw new LeaseRecordError(key, (error as Error).message.replace("lease attrs: ", ""));
  }
  return attrs;
}

/** True when two attrs describe the same node endpoint. */
export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return a.publicIp === b.publicIp && a.vni === b.vni && a.vtepMac === b.vtepMac &&
    a.backendType === b.backendType;
}

/** How acquireLease should proceed, decided from a list of current leases (pure). */
export type AcquirePlan =
  | { readonly kind: "reuse"; readonly subnet: string }
  | { readonly kind: "create"; readonly subnet: string; readonly drop?: string };

/**
 * flannel's acquisition rules as a pure function: reuse the lease carrying our public IP when
 * it fits the config (else drop it), then the previous subnet when free, else a random free one
 * among the first 100. `occupied` lists subnets whose records are unreadable (never handed out).
 * Throws StoreError when the network is full.
 */
export function planAcquire(
  config: NetConfig,
  leases: readonly Lease[],
  attrs: LeaseAttrs,
  options: AcquireOptions & { readonly occupied?: readonly string[] } = {},
  random: () => number = Math.random,
): AcquirePlan {
  let drop: string | undefined;
  const mine = leases.find((l) => l.attrs.publicIp === attrs.publicIp);
  if (mine) {
    if (subnetFitsConfig(config, parseCidr(mine.subnet))) {
      return { kind: "reuse", subnet: mine.subnet };
    }
    drop = mine.subnet;
  }
  // `occupied`: keys whose record cannot be read still hold their subnet.
  const taken = [...leases.map((l) => l.subnet), ...(options.occupied ?? [])]
    .filter((s) => s !== drop).map((s) => parseCidr(s));
  const free = (c: Cidr) => !taken.some((t) => cidrsOverlap(t, c));
  if (options.previousSubnet) {
    const prev = parseCidr(options.previousSubnet);
    if (subnetFitsConfig(config, prev) && free(prev)) {
      return { kind: "create", subnet: formatCidr(prev), ...(drop && { drop }) };
    }
  }
  const size = 2 ** (32 - config.subnetLen);
  const candidates: number[] = [];
  for (let base = config.subnetMin; base <= config.subnetMax && candidates.length < 100;) {
    if (free({ base, prefix: config.subnetLen })) candidates.push(base);
    base += size;
  }
  if (candidates.length === 0) {
    throw new StoreError(
      `no free subnet left in ${formatIpv4(config.subnetMin)}..${
        formatIpv4(config.subnetMax)
      } (/${config.subnetLen})`,
    );
  }
  const pick = candidates[Math.floor(random() * candidates.length)];
  return {
    kind: "create",
    subnet: formatCidr({ base: pick, prefix: config.subnetLen }),
    ...(drop && { drop }),
  };
}

/** A random locally administered unicast MAC (flannel.N devices get one like this). */
export function randomVtepMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0] & 0xfe) | 0x02;
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}
