/**
 * Choosing the uplink (the interface VXLAN rides on): explicitly by name, by address or by
 * CIDR, or from the default route. A NAT-only interface (VirtualBox/QEMU user networking,
 * 10.0.2.15 behind 10.0.2.2) is never picked when another interface fits: its address is not
 * reachable from other nodes.
 * @module
 */
import {
  type Cidr,
  cidrContains,
  formatCidr,
  parseCidr,
  parseIpv4,
  tryParseIpv4,
} from "../net/ipv4.ts";
import { iprouteJson, type LinkInfo, type RouteInfo } from "../net/iproute.ts";

/** How to choose (at most one field; none = the default route). */
export interface UplinkSelector {
  readonly iface?: string;
  readonly ip?: string;
  readonly cidr?: string;
}

/** The chosen uplink. */
export interface Uplink {
  readonly name: string;
  /** The node's public IP (VXLAN local address). */
  readonly ip: string;
  /** The uplink's connected subnet. */
  readonly cidr: Cidr;
  readonly mtu: number;
  /** Why this one, for the log. */
  readonly reason: string;
}

/** No interface fits the selector; the message says what was looked at. */
export class UplinkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UplinkError";
  }
}

const NAT_ONLY = parseCidr("10.0.2.0/24");

/** True for the user-mode NAT address range of VirtualBox/QEMU (10.0.2.15 behind 10.0.2.2). */
export function isNatOnly(ip: string): boolean {
  return cidrContains(NAT_ONLY, parseIpv4(ip));
}

interface Candidate {
  name: string;
  ip: string;
  cidr: Cidr;
  mtu: number;
}

function candidates(links: readonly LinkInfo[]): Candidate[] {
  const out: Candidate[] = [];
  for (const link of links) {
    if (link.ifname === "lo" || !(link.flags ?? []).includes("UP")) continue;
    for (const a of link.addr_info ?? []) {
      if (a.family !== "inet" || (a.scope && a.scope !== "global")) continue;
      out.push({
        name: link.ifname,
        ip: a.local,
        cidr: parseCidr(`${a.local}/${a.prefixlen}`, { strict: false }),
        mtu: link.mtu,
      });
    }
  }
  return out;
}

function pick(list: Candidate[], reason: string): Uplink | undefined {
  const preferred = list.find((c) => !isNatOnly(c.ip)) ?? list[0];
  if (!preferred) return undefined;
  const natNote = isNatOnly(preferred.ip) ? " (NAT-only address, nothing else fits)" : "";
  return { ...preferred, cidr: { ...preferred.cidr }, reason: reason + natNote };
}

/**
 * Chooses the uplink from `ip -j -4 addr show` links and `ip -j -4 route show default` routes
 * (pure). Throws UplinkError when nothing fits.
 */
export function chooseUplink(
  selector: UplinkSelector,
  links: readonly LinkInfo[],
  defaultRoutes: readonly RouteInfo[],
): Uplink {
  const all = candidates(links);
  const seen = all.map((c) => `${c.name}=${c.ip}`).join(", ") || "no IPv4 interface up";
  if (selector.iface) {
    const found = pick(all.filter((c) => c.name === selector.iface), `--iface ${selector.iface}`);
    if (!found) {
      throw new UplinkError(
        `uplink interface "${selector.iface}" is missing, down or has no IPv4 address (${seen})`,
      );
    }
    return found;
  }
  if (selector.ip) {
    if (tryParseIpv4(selector.ip) === undefined) {
      throw new UplinkError(`uplink ip "${selector.ip}" is not an IPv4 address`);
    }
    const found = pick(all.filter((c) => c.ip === selector.ip), `address ${selector.ip}`);
    if (!found) throw new UplinkError(`no interface has address ${selector.ip} (${seen})`);
    return found;
  }
  if (selector.cidr) {
    const cidr = parseCidr(selector.cidr, { strict: false });
    const found = pick(
      all.filter((c) => cidrContains(cidr, parseIpv4(c.ip))),
      `address in ${formatCidr(cidr)}`,
    );
    if (!found) throw new UplinkError(`no interface has an address in ${selector.cidr} (${seen})`);
    return found;
  }
  const byMetric = [...defaultRoutes].sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0));
  const viaDefault = byMetric.flatMap((r) => all.filter((c) => c.name === r.dev));
  const routed = viaDefault.find((c) => !isNatOnly(c.ip));
  if (routed) return { ...routed, reason: `default route via ${routed.name}` };
  // The default route leads to a NAT-only interface (Vagrant): another interface is the one
  // other nodes can reach.
  const other = all.find((c) => !isNatOnly(c.ip));
  if (other) {
    return {
      ...other,
      reason: `default route is via NAT-only ${
        viaDefault[0]?.name ?? "(none)"
      }; using ${other.name}`,
    };
  }
  const last = pick(viaDefault, `default route via ${viaDefault[0]?.name}`);
  if (last) return last;
  throw new UplinkError(`no uplink: no default route and no usable interface (${seen})`);
}

/** Reads links and default routes in `netns` and chooses the uplink. */
export async function detectUplink(selector: UplinkSelector, netns = ""): Promise<Uplink> {
  const [links, routes] = await Promise.all([
    iprouteJson<LinkInfo>("ip", ["-4", "addr", "show"], netns),
    iprouteJson<RouteInfo>("ip", ["-4", "route", "show", "default"], netns),
  ]);
  return chooseUplink(selector, links, routes);
}
