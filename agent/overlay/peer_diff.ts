/**
 * The per-peer kernel entries of flannel's vxlan backend as data, and the pure difference
 * between what the leases want and what the kernel has, turned into ordered iproute2 batches.
 *
 * Per remote lease, in this order: neighbour `<subnet>.0 lladdr <VtepMAC> nud permanent`, FDB
 * `<VtepMAC> dst <PublicIP> self permanent`, route `<subnet> via <subnet>.0 dev flannel.N
 * onlink` — or, with DirectRouting and the peer on the uplink's subnet, only a route via its
 * public IP on the uplink. Removal goes in reverse (route, FDB, neighbour).
 * @module
 */
import { type Cidr, cidrContains, formatIpv4, parseCidr, parseIpv4 } from "../net/ipv4.ts";
import type { Lease } from "./subnet_store.ts";

/** What the node needs to know to compute its entries. */
export interface PeerContext {
  /** flannel.<VNI>. */
  readonly device: string;
  readonly vni: number;
  /** Our own subnet (never programmed as a peer). */
  readonly ownSubnet: string;
  /** The pod network: routes inside it are ours to manage. */
  readonly network: Cidr;
  readonly uplink: { readonly name: string; readonly cidr: Cidr; readonly ip: string };
  readonly directRouting: boolean;
}

/** A neighbour entry on the VXLAN device. */
export interface NeighEntry {
  readonly ip: string;
  readonly mac: string;
}

/** An FDB entry on the VXLAN device. */
export interface FdbEntry {
  readonly mac: string;
  readonly dst: string;
}

/** A route to a peer subnet. */
export interface RouteEntry {
  readonly dst: string;
  readonly via: string;
  readonly dev: string;
  readonly onlink: boolean;
}

/** Entries on one side (desired or in the kernel). */
export interface PeerEntries {
  readonly neighs: readonly NeighEntry[];
  readonly fdbs: readonly FdbEntry[];
  readonly routes: readonly RouteEntry[];
}

/** What to change, in the order it must happen. */
export interface PeerDiff {
  readonly routeDel: readonly RouteEntry[];
  readonly fdbDel: readonly FdbEntry[];
  readonly neighDel: readonly NeighEntry[];
  readonly neighSet: readonly NeighEntry[];
  readonly fdbSet: readonly FdbEntry[];
  readonly routeSet: readonly RouteEntry[];
}

/** Why a lease was not programmed. */
export interface SkippedLease {
  readonly subnet: string;
  readonly reason: string;
}

/** The entries the leases ask for (pure); leases that cannot be served are returned apart. */
export function desiredEntries(
  ctx: PeerContext,
  leases: readonly Lease[],
): { entries: PeerEntries; skipped: SkippedLease[] } {
  const neighs: NeighEntry[] = [];
  const fdbs: FdbEntry[] = [];
  const routes: RouteEntry[] = [];
  const skipped: SkippedLease[] = [];
  const sorted = [...leases].sort((a, b) => parseCidr(a.subnet).base - parseCidr(b.subnet).base);
  for (const lease of sorted) {
    if (lease.subnet === ctx.ownSubnet) continue;
    if (lease.attrs.publicIp === ctx.uplink.ip) {
      // Another lease naming our own address (a stale one, or a clash): never tunnel to self.
      skipped.push({
        subnet: lease.subnet,
        reason: `its public IP ${lease.attrs.publicIp} is ours`,
      });
      continue;
    }
    if (lease.attrs.vni !== ctx.vni) {
      skipped.push({ subnet: lease.subnet, reason: `VNI ${lease.attrs.vni} is not ours` });
      continue;
    }
    const cidr = parseCidr(lease.subnet);
    const gateway = formatIpv4(cidr.base);
    if (ctx.directRouting && cidrContains(ctx.uplink.cidr, parseIpv4(lease.attrs.publicIp))) {
      routes.push({
        dst: lease.subnet,
        via: lease.attrs.publicIp,
        dev: ctx.uplink.name,
        onlink: false,
      });
      continue;
    }
    neighs.push({ ip: gateway, mac: lease.attrs.vtepMac });
    fdbs.push({ mac: lease.attrs.vtepMac, dst: lease.attrs.publicIp });
    routes.push({ dst: lease.subnet, via: gateway, dev: ctx.device, onlink: true });
  }
  return { entries: { neighs, fdbs, routes }, skipped };
}

const routeKey = (r: RouteEntry) => `${r.dst} ${r.via} ${r.dev} ${r.onlink}`;

/** The difference desired − actual (pure). Entries already right are left alone. */
export function diffEntries(desired: PeerEntries, actual: PeerEntries): PeerDiff {
  const wantNeigh = new Map(desired.neighs.map((n) => [n.ip, n.mac]));
  const haveNeigh = new Map(actual.neighs.map((n) => [n.ip, n.mac]));
  const neighDel = actual.neighs.filter((n) => !wantNeigh.has(n.ip));
  const neighSet = desired.neighs.filter((n) => haveNeigh.get(n.ip) !== n.mac);

  const wantFdb = new Map(desired.fdbs.map((f) => [f.mac, f.dst]));
  const fdbDel = actual.fdbs.filter((f) => wantFdb.get(f.mac) !== f.dst);
  const haveFdb = new Set(actual.fdbs.map((f) => `${f.mac} ${f.dst}`));
  const fdbSet = desired.fdbs.filter((f) => !haveFdb.has(`${f.mac} ${f.dst}`));

  const wantRoute = new Map(desired.routes.map((r) => [r.dst, r]));
  const haveRoute = new Set(actual.routes.map(routeKey));
  // A route for a wanted dst that differs is replaced in place (`route replace`), not deleted.
  const routeDel = actual.routes.filter((r) => !wantRoute.has(r.dst));
  const routeSet = desired.routes.filter((r) => !haveRoute.has(routeKey(r)));
  return { routeDel, fdbDel, neighDel, neighSet, fdbSet, routeSet };
}

/** Number of kernel operations in a diff. */
export function diffSize(diff: PeerDiff): number {
  return diff.routeDel.length + diff.fdbDel.length + diff.neighDel.length +
    diff.neighSet.length + diff.fdbSet.length + diff.routeSet.length;
}

/** One batch for one tool. */
export interface Batch {
  readonly tool: "ip" | "bridge";
  readonly lines: readonly string[];
}

/**
 * The diff as iproute2 batches in the required order: route del → fdb del → neigh del/set →
 * fdb set → route set. Empty steps are dropped.
 */
export function diffToBatches(diff: PeerDiff, device: string): Batch[] {
  const route = (r: RouteEntry) => `${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? " onlink" : ""}`;
  const steps: Batch[] = [
    { tool: "ip", lines: diff.routeDel.map((r) => `route del ${route(r)}`) },
    {
      tool: "bridge",
      lines: diff.fdbDel.map((f) => `fdb del ${f.mac} dev ${device} dst ${f.dst} self`),
    },
    {
      tool: "ip",
      lines: [
        ...diff.neighDel.map((n) => `neigh del ${n.ip} dev ${device}`),
        ...diff.neighSet.map((n) =>
          `neigh replace ${n.ip} lladdr ${n.mac} dev ${device} nud permanent`
        ),
      ],
    },
    {
      tool: "bridge",
      lines: diff.fdbSet.map((f) =>
        `fdb append ${f.mac} dev ${device} dst ${f.dst} self permanent`
      ),
    },
    { tool: "ip", lines: diff.routeSet.map((r) => `route replace ${route(r)}`) },
  ];
  return steps.filter((s) => s.lines.length > 0);
}
