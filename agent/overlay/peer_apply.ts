/**
 * The thin kernel side of peer_diff.ts: read the neighbour, FDB and route entries skiff owns in
 * a node's netns, and apply a diff with a few `ip -batch` / `bridge -batch` subprocesses.
 * @module
 */
import { cidrContains, parseCidr, tryParseIpv4 } from "../net/ipv4.ts";
import { iprouteBatch, iprouteJson, type RouteInfo } from "../net/iproute.ts";
import {
  diffEntries,
  diffSize,
  diffToBatches,
  type PeerContext,
  type PeerEntries,
} from "./peer_diff.ts";

interface NeighJson {
  dst: string;
  lladdr?: string;
  state?: string[];
}

interface FdbJson {
  mac: string;
  dst?: string;
  flags?: string[];
  state?: string;
}

/**
 * What the kernel has that is ours: permanent neighbours and FDB entries with a dst on the VXLAN
 * device, routes on it, and routes into the pod network via a gateway on the uplink (direct).
 */
export async function readPeerEntries(ctx: PeerContext, netns = ""): Promise<PeerEntries> {
  const [neighs, fdbs, routes] = await Promise.all([
    iprouteJson<NeighJson>("ip", ["neigh", "show", "dev", ctx.device], netns),
    iprouteJson<FdbJson>("bridge", ["fdb", "show", "dev", ctx.device], netns),
    iprouteJson<RouteInfo>("ip", ["route", "show", "table", "main"], netns),
  ]);
  return {
    neighs: neighs
      .filter((n) => n.lladdr && n.state?.includes("PERMANENT"))
      .map((n) => ({ ip: n.dst, mac: n.lladdr!.toLowerCase() })),
    fdbs: fdbs
      .filter((f) => f.dst && f.state === "permanent")
      .map((f) => ({ mac: f.mac.toLowerCase(), dst: f.dst! })),
    routes: routes.filter((r) => {
      if (!r.gateway || !r.dst.includes("/") && tryParseIpv4(r.dst) === undefined) return false;
      const dst = parseCidr(r.dst.includes("/") ? r.dst : `${r.dst}/32`, { strict: false });
      if (!cidrContains(ctx.network, dst.base)) return false;
      return r.dev === ctx.device || r.dev === ctx.uplink.name;
    }).map((r) => ({
      dst: r.dst.includes("/") ? r.dst : `${r.dst}/32`,
      via: r.gateway!,
      dev: r.dev!,
      onlink: r.flags?.includes("onlink") ?? false,
    })),
  };
}

/** What one convergence did. */
export interface PeerSyncReport {
  readonly operations: number;
  readonly durationMs: number;
  readonly peers: number;
}

/**
 * Diffs `desired` against the kernel and applies only the difference. `known` (what the last
 * successful sync left) skips the reads on event-driven syncs; without it the kernel is read,
 * as on start and on periodic resyncs that repair changes made under the agent.
 */
export async function syncPeers(
  ctx: PeerContext,
  desired: PeerEntries,
  netns = "",
  known?: PeerEntries,
): Promise<PeerSyncReport> {
  const started = performance.now();
  const actual = known ?? await readPeerEntries(ctx, netns);
  const diff = diffEntries(desired, actual);
  const failures: string[] = [];
  for (const batch of diffToBatches(diff, ctx.device)) {
    // -force: a line the kernel refuses must not hold back the other peers' entries.
    await iprouteBatch(batch.tool, batch.lines, netns, { force: true }).catch((error) => {
      failures.push((error as Error).message);
    });
  }
  if (failures.length > 0) throw new Error(`peer sync incomplete: ${failures.join("; ")}`);
  return {
    operations: diffSize(diff),
    durationMs: performance.now() - started,
    peers: desired.routes.length,
  };
}
