/**
 * `skiff routes`: the overlay's kernel state on this node checked against the store. For each
 * remote lease: the route to its subnet, the neighbour entry of its VTEP and the FDB entry to
 * its public IP, each "ok", "missing" or "wrong" (with what the kernel has instead), read
 * with `ip -j` / `bridge -j` in the node's netns; entries no lease asks for are "stale".
 * @module
 */
import type { AgentConfig } from "../../agent/config.ts";
import { readLink } from "../../agent/net/iproute.ts";
import { formatIpv4, parseCidr } from "../../agent/net/ipv4.ts";
import { readPeerEntries } from "../../agent/overlay/peer_apply.ts";
import {
  desiredEntries,
  type PeerContext,
  type PeerEntries,
  type RouteEntry,
} from "../../agent/overlay/peer_diff.ts";
import type { Lease } from "../../agent/overlay/subnet_store.ts";
import { detectUplink } from "../../agent/overlay/uplink.ts";
import { type Command, EXIT_OK } from "../command.ts";
import { NODE_CONFIG_HELP } from "../node_config.ts";
import { OUTPUT_HELP, printView } from "../output.ts";
import { findOwnLease, openNodeStore } from "./overlay_view.ts";
import { parseViewArgs } from "./view_common.ts";

const HELP = `Usage: skiff routes [-o table|json] [--config PATH] [--netns PATH]

Checks the overlay's kernel entries in the node's network namespace (config netns, else
the current one) against the store's leases. Per remote node: ROUTE (its subnet via its
VTEP on flannel.<VNI>, or via its public IP with DirectRouting), NEIGH (VTEP address →
VTEP MAC) and FDB (VTEP MAC → public IP), each "ok", "missing" or "wrong: <what the
kernel has>"; "-" where the entry is not used. Entries no lease asks for are "stale".

Options:
${OUTPUT_HELP}
${NODE_CONFIG_HELP}
  -h, --help             this help`;

/** One entry's state. */
export interface EntryCheck {
  /** ok, missing, wrong, stale, or n/a (not used for this peer). */
  readonly status: "ok" | "missing" | "wrong" | "stale" | "n/a";
  /** What the lease asks for (text), or null. */
  readonly want: string | null;
  /** What the kernel has (text), or null. */
  readonly have: string | null;
}

/** One row of `skiff routes -o json`. */
export interface PeerView {
  readonly subnet: string;
  readonly publicIp: string | null;
  readonly vtepMac: string | null;
  /** Why a lease is not programmed (e.g. another VNI), else null. */
  readonly skipped: string | null;
  readonly route: EntryCheck;
  readonly neigh: EntryCheck;
  readonly fdb: EntryCheck;
}

const routeText = (r: RouteEntry) =>
  `${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? " onlink" : ""}`;

function check(want: string | undefined, have: string | undefined): EntryCheck {
  if (want === undefined) {
    return have === undefined
      ? { status: "n/a", want: null, have: null }
      : { status: "stale", want: null, have };
  }
  if (have === undefined) return { status: "missing", want, have: null };
  return { status: want === have ? "ok" : "wrong", want, have };
}

/** Per-lease checks of `desired` vs `actual` (pure). */
export function comparePeers(
  leases: readonly Lease[],
  ownSubnet: string,
  desired: PeerEntries,
  actual: PeerEntries,
  skipped: readonly { subnet: string; reason: string }[],
): PeerView[] {
  const haveRoute = new Map(actual.routes.map((r) => [r.dst, routeText(r)]));
  const haveNeigh = new Map(actual.neighs.map((n) => [n.ip, `${n.ip} lladdr ${n.mac}`]));
  const haveFdb = new Map<string, string>();
  for (const f of actual.fdbs) {
    const prior = haveFdb.get(f.mac);
    haveFdb.set(f.mac, prior ? `${prior}, ${f.mac} dst ${f.dst}` : `${f.mac} dst ${f.dst}`);
  }
  const used = { routes: new Set<string>(), neighs: new Set<string>(), fdbs: new Set<string>() };
  const rows: PeerView[] = [];
  const sorted = [...leases].sort((a, b) => parseCidr(a.subnet).base - parseCidr(b.subnet).base);
  for (const lease of sorted) {
    if (lease.subnet === ownSubnet) continue;
    const route = desired.routes.find((r) => r.dst === lease.subnet);
    const gateway = formatIpv4(parseCidr(lease.subnet).base);
    const neigh = desired.neighs.find((n) => n.ip === gateway);
    const fdb = desired.fdbs.find((f) => f.mac === lease.attrs.vtepMac);
    used.routes.add(lease.subnet);
    if (neigh) used.neighs.add(neigh.ip);
    if (fdb) used.fdbs.add(fdb.mac);
    rows.push({
      subnet: lease.subnet,
      publicIp: lease.attrs.publicIp,
      vtepMac: lease.attrs.vtepMac,
      skipped: skipped.find((s) => s.subnet === lease.subnet)?.reason ?? null,
      route: check(route && routeText(route), haveRoute.get(lease.subnet)),
      neigh: check(
        neigh && `${neigh.ip} lladdr ${neigh.mac}`,
        neigh ? haveNeigh.get(gateway) : undefined,
      ),
      fdb: check(fdb && `${fdb.mac} dst ${fdb.dst}`, fdb ? haveFdb.get(fdb.mac) : undefined),
    });
  }
  // What the kernel holds that no lease explains: one row per stale entry.
  const none: EntryCheck = { status: "n/a", want: null, have: null };
  for (const r of actual.routes) {
    if (used.routes.has(r.dst)) continue;
    rows.push({
      subnet: r.dst,
      publicIp: null,
      vtepMac: null,
      skipped: null,
      route: check(undefined, routeText(r)),
      neigh: none,
      fdb: none,
    });
  }
  for (const n of actual.neighs) {
    if (used.neighs.has(n.ip)) continue;
    rows.push({
      subnet: `${n.ip}/32`,
      publicIp: null,
      vtepMac: n.mac,
      skipped: null,
      route: none,
      neigh: check(undefined, `${n.ip} lladdr ${n.mac}`),
      fdb: none,
    });
  }
  for (const f of actual.fdbs) {
    if (used.fdbs.has(f.mac)) continue;
    rows.push({
      subnet: "-",
      publicIp: f.dst,
      vtepMac: f.mac,
      skipped: null,
      route: none,
      neigh: none,
      fdb: check(undefined, `${f.mac} dst ${f.dst}`),
    });
  }
  return rows;
}

interface RoutesView {
  readonly netns: string;
  readonly device: string;
  readonly uplink: string;
  readonly subnet: string;
  readonly peers: PeerView[];
  /** True when every entry is ok (nothing missing, wrong or stale). */
  readonly converged: boolean;
}

async function readRoutes(config: AgentConfig): Promise<RoutesView> {
  const store = await openNodeStore(config);
  let leases: readonly Lease[];
  let vni: number;
  let ctxBase: Omit<PeerContext, "ownSubnet" | "uplink">;
  try {
    const net = await store.getNetworkConfig();
    leases = (await store.listLeases()).leases;
    vni = net.backend.vni;
    ctxBase = {
      device: `flannel.${vni}`,
      vni,
      network: net.network,
      directRouting: net.backend.directRouting,
    };
  } finally {
    await store.close();
  }
  const { lease: own } = await findOwnLease(config, leases);
  const where = config.netns || "the current network namespace";
  if (!own) {
    throw new Error(
      `no lease in the store belongs to this node (no lease's public IP is an address in ${where}, and ${config.cni.subnetFile} names none): is the overlay running here? (--netns)`,
    );
  }
  if (!(await readLink(ctxBase.device, config.netns))) {
    throw new Error(`${ctxBase.device} does not exist in ${where}: the overlay is not set up`);
  }
  const uplink = await detectUplink(config.uplink, config.netns);
  const ctx: PeerContext = {
    ...ctxBase,
    ownSubnet: own.subnet,
    uplink: { name: uplink.name, cidr: uplink.cidr, ip: uplink.ip },
  };
  const { entries, skipped } = desiredEntries(ctx, leases);
  const actual = await readPeerEntries(ctx, config.netns);
  const peers = comparePeers(leases, own.subnet, entries, actual, skipped);
  const converged = peers.every((p) =>
    [p.route, p.neigh, p.fdb].every((c) => c.status === "ok" || c.status === "n/a")
  );
  return {
    netns: config.netns,
    device: ctx.device,
    uplink: uplink.name,
    subnet: own.subnet,
    peers,
    converged,
  };
}

function cell(c: EntryCheck): string {
  return c.status === "wrong" ? `wrong: ${c.have}` : c.status === "n/a" ? "-" : c.status;
}

/** `skiff routes`. */
export const routesCommand: Command = {
  name: "routes",
  summary: "overlay routes, neighbours and FDB entries vs the store's leases",
  async run(args) {
    const parsed = await parseViewArgs(args, HELP);
    if (!parsed) return EXIT_OK;
    const { format, config } = parsed;
    const view = await readRoutes(config);
    printView(format, view, {
      headers: ["SUBNET", "NODE-IP", "VTEP-MAC", "ROUTE", "NEIGH", "FDB"],
      rows: view.peers.map((p) => [
        p.subnet,
        p.publicIp ?? "-",
        p.vtepMac ?? "-",
        p.skipped ? `skipped: ${p.skipped}` : cell(p.route),
        cell(p.neigh),
        cell(p.fdb),
      ]),
      empty: `No other nodes' leases in the store (this node: ${view.subnet}).`,
    });
    return EXIT_OK;
  },
};
