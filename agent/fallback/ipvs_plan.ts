/**
 * The IPVS data plane as a pure plan: from a Service snapshot, the desired dummy device
 * addresses, ipsets, virtual/real servers and iptables chains; from the current state (parsed
 * `ip -o addr`, `ipset save`, `ipvsadm -Sn`), the exact operations that converge it, as
 * `ip -batch`, `ipset restore` and `ipvsadm -R` lines. The kernel is touched in ipvs_dataplane.ts.
 *
 * How it works (kube-proxy's IPVS mode): every Service address sits on a dummy device so the
 * node accepts it; a virtual server per address:port balances to real servers in masquerade
 * (NAT) mode; iptables, through ipsets, only marks traffic that needs SNAT.
 * @module
 */
import {
  type Endpoint,
  endpointsForNewFlows,
  type ServicePort,
  type ServiceSnapshot,
} from "../lb/model.ts";
import { formatCidr, parseCidr, parseIpv4 } from "../net/ipv4.ts";
import {
  baseChains,
  MARK_MASQ_CHAIN,
  NODEPORTS_CHAIN,
  serviceJumps,
  SERVICES_CHAIN,
  SVC_POSTROUTING_CHAIN,
} from "./iptables_rules.ts";
import type { Jump, OwnedChain, Rule } from "./iptables_text.ts";
import { checkSnapshot } from "./service_check.ts";

/** The dummy device holding every Service address. */
export const IPVS_DEVICE = "skiff-ipvs0";

/** skiff's ipsets and their types. */
export const IPSETS = {
  "SKIFF-CLUSTER-IP": "hash:ip,port",
  "SKIFF-EXTERNAL-IP": "hash:ip,port",
  "SKIFF-NODE-PORT-TCP": "bitmap:port range 0-65535",
  "SKIFF-NODE-PORT-UDP": "bitmap:port range 0-65535",
  "SKIFF-LOOP-BACK": "hash:ip,port,ip",
} as const;

export type IpsetName = keyof typeof IPSETS;

/** What the plan depends on besides the snapshot. */
export interface IpvsContext {
  readonly nodeName: string;
  /** The node's own addresses: NodePorts get a virtual server on each. */
  readonly nodeAddresses: readonly string[];
  /** The cluster Network; traffic to ClusterIPs from outside it is masqueraded. */
  readonly clusterCidr?: string;
  /** IPVS scheduler (rr, wrr, lc, sh, mh…); default "rr". */
  readonly scheduler?: string;
}

/** One real server of a virtual server. */
export interface RealServer {
  /** "-m" masquerade (NAT); "-g" and "-i" are parsed but never planned. */
  readonly method: "-m" | "-g" | "-i";
  readonly weight: number;
}

/** One virtual server: key "-t 10.96.0.10:80" / "-u …". */
export interface VirtualServer {
  readonly scheduler: string;
  /** Persistence timeout in seconds (ClientIP affinity), or undefined. */
  readonly persistence?: number;
  /** Keyed "ip:port". */
  readonly reals: ReadonlyMap<string, RealServer>;
}

/** The kernel state the plan converges (current or desired). */
export interface IpvsState {
  readonly device: boolean;
  /** Addresses on the dummy device (plain IPv4, no prefix). */
  readonly addresses: ReadonlySet<string>;
  readonly ipsets: ReadonlyMap<string, ReadonlySet<string>>;
  readonly services: ReadonlyMap<string, VirtualServer>;
}

/** The operations to apply, in order: ip, then ipset, then ipvsadm. */
export interface IpvsPlan {
  /** `ip -batch -` lines. */
  readonly ip: string[];
  /** `ipset restore` lines. */
  readonly ipset: string[];
  /** `ipvsadm -R` lines. */
  readonly ipvsadm: string[];
  /** `ip -batch` lines run after ipvsadm (address removal, once no server uses it). */
  readonly ipAfter: string[];
  /** `ipset restore` lines run last (member removal). */
  readonly ipsetAfter: string[];
}

/** An empty state (nothing installed). */
export const EMPTY_IPVS_STATE: IpvsState = {
  device: false,
  addresses: new Set(),
  ipsets: new Map(),
  services: new Map(),
};

/** Parses `ipvsadm -Sn` (save) output. */
export function parseIpvsadmSave(text: string): Map<string, VirtualServer> {
  const services = new Map<
    string,
    { scheduler: string; persistence?: number; reals: Map<string, RealServer> }
  >();
  for (const raw of text.split("\n")) {
    const t = raw.trim().split(/\s+/);
    if (t[0] === "-A") {
      const key = `${t[1]} ${t[2]}`;
      const s = t.indexOf("-s");
      const p = t.indexOf("-p");
      services.set(key, {
        scheduler: s >= 0 ? t[s + 1] : "wlc",
        persistence: p >= 0 ? Number(t[p + 1]) : undefined,
        reals: new Map(),
      });
    } else if (t[0] === "-a") {
      const key = `${t[1]} ${t[2]}`;
      const r = t.indexOf("-r");
      const w = t.indexOf("-w");
      const method = (["-m", "-g", "-i"] as const).find((m) => t.includes(m)) ?? "-g";
      services.get(key)?.reals.set(t[r + 1], { method, weight: w >= 0 ? Number(t[w + 1]) : 1 });
    }
  }
  return services;
}

/** Parses `ipset save` output into members per set. */
export function parseIpsetSave(text: string): Map<string, Set<string>> {
  const sets = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    const t = line.trim().split(/\s+/);
    if (t[0] === "create") sets.set(t[1], new Set());
    else if (t[0] === "add") sets.get(t[1])?.add(t[2]);
  }
  return sets;
}

/** Parses `ip -o -4 addr show dev skiff-ipvs0` into plain addresses. */
export function parseAddresses(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of text.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\/\d+/g)) out.add(m[1]);
  return out;
}

/**
 * Pure: whether a virtual server ("-t 10.96.0.10:80") is skiff's: its address is on the dummy
 * device, or its port is one of skiff's NodePorts (SKIFF-NODE-PORT-TCP/UDP members) and, when
 * `nodeAddresses` is given, its address is one of them. Foreign servers are never touched.
 */
export function isOurVirtualServer(
  key: string,
  deviceAddresses: ReadonlySet<string>,
  ipsets: ReadonlyMap<string, ReadonlySet<string>>,
  nodeAddresses?: ReadonlySet<string>,
): boolean {
  const [flag, addr] = key.split(" ");
  const [ip, port] = addr.split(":");
  if (deviceAddresses.has(ip)) return true;
  const set = ipsets.get(flag === "-t" ? "SKIFF-NODE-PORT-TCP" : "SKIFF-NODE-PORT-UDP");
  return (set?.has(port) ?? false) && (nodeAddresses?.has(ip) ?? true);
}

function targetKey(e: Endpoint, port: ServicePort): string {
  return `${e.ip}:${e.ports?.[port.name] ?? port.targetPort}`;
}

function byAddress(a: string, b: string): number {
  const [ia, pa] = a.split(":");
  const [ib, pb] = b.split(":");
  return parseIpv4(ia) - parseIpv4(ib) || Number(pa) - Number(pb);
}

/** Pure: the desired IPVS state for a snapshot (checked first). */
export function desiredIpvsState(snapshot: ServiceSnapshot, ctx: IpvsContext): IpvsState {
  checkSnapshot(snapshot);
  const scheduler = ctx.scheduler ?? "rr";
  if (!/^[a-z]{1,8}$/.test(scheduler)) {
    throw new TypeError(`scheduler "${scheduler}" is not an IPVS scheduler name`);
  }
  const addresses = new Set<string>();
  const ipsets = new Map<string, Set<string>>(
    Object.keys(IPSETS).map((n) => [n, new Set<string>()]),
  );
  const services = new Map<string, VirtualServer>();
  const add = (key: string, persistence: number | undefined, targets: string[]) => {
    const reals = new Map<string, RealServer>();
    for (const t of [...targets].sort(byAddress)) reals.set(t, { method: "-m", weight: 1 });
    services.set(key, { scheduler, persistence, reals });
  };
  for (const { service: s, endpoints } of snapshot.services) {
    const persistence = s.sessionAffinity === "ClientIP" ? s.affinityTimeoutSeconds : undefined;
    const clusterEps = endpointsForNewFlows(endpoints);
    const localEps = endpointsForNewFlows(endpoints.filter((e) => e.node === ctx.nodeName));
    const internal = s.internalTrafficPolicy === "Local" ? localEps : clusterEps;
    const external = s.externalTrafficPolicy === "Local" ? localEps : clusterEps;
    for (const port of s.ports) {
      const flag = port.protocol === "TCP" ? "-t" : "-u";
      const proto = port.protocol.toLowerCase();
      const internalTargets = internal.map((e) => targetKey(e, port));
      const externalTargets = external.map((e) => targetKey(e, port));
      for (const vip of s.clusterIPs) {
        addresses.add(vip);
        ipsets.get("SKIFF-CLUSTER-IP")!.add(`${vip},${proto}:${port.port}`);
        add(`${flag} ${vip}:${port.port}`, persistence, internalTargets);
      }
      for (const ip of [...s.externalIPs, ...s.loadBalancerIPs]) {
        addresses.add(ip);
        ipsets.get("SKIFF-EXTERNAL-IP")!.add(`${ip},${proto}:${port.port}`);
        add(`${flag} ${ip}:${port.port}`, persistence, externalTargets);
      }
      if (port.nodePort !== undefined) {
        ipsets.get(`SKIFF-NODE-PORT-${port.protocol}`)!.add(String(port.nodePort));
        for (const ip of ctx.nodeAddresses) {
          add(`${flag} ${ip}:${port.nodePort}`, persistence, externalTargets);
        }
      }
      for (const e of clusterEps) {
        const [ip, p] = targetKey(e, port).split(":");
        ipsets.get("SKIFF-LOOP-BACK")!.add(`${ip},${proto}:${p},${ip}`);
      }
    }
  }
  return { device: true, addresses, ipsets, services };
}

function serverLine(op: "-A" | "-E", key: string, vs: VirtualServer): string {
  return `${op} ${key} -s ${vs.scheduler}${
    vs.persistence === undefined ? "" : ` -p ${vs.persistence}`
  }`;
}

function realLine(op: "-a" | "-e", key: string, real: string, r: RealServer): string {
  return `${op} ${key} -r ${real} ${r.method} -w ${r.weight}`;
}

const sorted = <T>(items: Iterable<T>): T[] => [...items].sort();

/** Pure: the operations that turn `current` into `desired`, in a safe order. */
export function planIpvs(current: IpvsState, desired: IpvsState): IpvsPlan {
  const ip: string[] = [], ipset: string[] = [], ipvsadm: string[] = [];
  const ipAfter: string[] = [], ipsetAfter: string[] = [];
  if (desired.device && !current.device) {
    ip.push(`link add ${IPVS_DEVICE} type dummy`, `link set ${IPVS_DEVICE} up`);
  }
  for (const a of sorted(desired.addresses)) {
    if (!current.addresses.has(a)) ip.push(`addr add ${a}/32 dev ${IPVS_DEVICE}`);
  }
  for (const [name, members] of [...desired.ipsets].sort(([a], [b]) => a < b ? -1 : 1)) {
    const have = current.ipsets.get(name);
    if (!have) ipset.push(`create ${name} ${IPSETS[name as IpsetName] ?? "hash:ip,port"}`);
    for (const m of sorted(members)) if (!have?.has(m)) ipset.push(`add ${name} ${m}`);
    for (const m of sorted(have ?? [])) if (!members.has(m)) ipsetAfter.push(`del ${name} ${m}`);
  }
  for (const [key, vs] of [...desired.services].sort(([a], [b]) => a < b ? -1 : 1)) {
    const have = current.services.get(key);
    if (!have) ipvsadm.push(serverLine("-A", key, vs));
    else if (have.scheduler !== vs.scheduler || have.persistence !== vs.persistence) {
      ipvsadm.push(serverLine("-E", key, vs));
    }
    for (const [real, r] of vs.reals) {
      const old = have?.reals.get(real);
      if (!old) ipvsadm.push(realLine("-a", key, real, r));
      else if (old.method !== r.method || old.weight !== r.weight) {
        ipvsadm.push(realLine("-e", key, real, r));
      }
    }
    for (const real of sorted(have?.reals.keys() ?? [])) {
      if (!vs.reals.has(real)) ipvsadm.push(`-d ${key} -r ${real}`);
    }
  }
  for (const key of sorted(current.services.keys())) {
    if (!desired.services.has(key)) ipvsadm.push(`-D ${key}`);
  }
  for (const a of sorted(current.addresses)) {
    if (!desired.addresses.has(a)) ipAfter.push(`addr del ${a}/32 dev ${IPVS_DEVICE}`);
  }
  return { ip, ipset, ipvsadm, ipAfter, ipsetAfter };
}

/** Pure: the iptables chains of the IPVS mode (marking through ipsets, masquerade). */
export function ipvsChains(ctx: IpvsContext): { chains: OwnedChain[]; jumps: Jump[] } {
  const clusterCidr = ctx.clusterCidr ? formatCidr(parseCidr(ctx.clusterCidr)) : undefined;
  const set = (name: string, dirs: string) => ["-m", "set", "--match-set", name, dirs];
  const services: Rule[] = [
    ...(clusterCidr === undefined ? [] : [{
      source: `!${clusterCidr}`,
      comment: "skiff: masquerade off-cluster traffic to ClusterIPs",
      matches: set("SKIFF-CLUSTER-IP", "dst,dst"),
      target: ["-j", MARK_MASQ_CHAIN],
    }]),
    {
      comment: "skiff: masquerade traffic to external IPs",
      matches: set("SKIFF-EXTERNAL-IP", "dst,dst"),
      target: ["-j", MARK_MASQ_CHAIN],
    },
    {
      comment: "skiff: NodePorts on local addresses",
      matches: ["-m", "addrtype", "--dst-type", "LOCAL"],
      target: ["-j", NODEPORTS_CHAIN],
    },
  ];
  const nodePorts: Rule[] = (["tcp", "udp"] as const).map((proto) => ({
    protocol: proto,
    comment: `skiff: masquerade ${proto} NodePort traffic`,
    matches: set(`SKIFF-NODE-PORT-${proto.toUpperCase()}`, "dst"),
    target: ["-j", MARK_MASQ_CHAIN],
  }));
  const base = baseChains().map((c) =>
    c.name !== SVC_POSTROUTING_CHAIN ? c : {
      ...c,
      rules: [{
        comment: "skiff: hairpin: an endpoint reaching itself through its Service",
        matches: set("SKIFF-LOOP-BACK", "dst,dst,src"),
        target: ["-j", "MASQUERADE"],
      }, ...c.rules],
    }
  );
  return {
    chains: [
      ...base,
      { table: "nat", name: SERVICES_CHAIN, rules: services },
      { table: "nat", name: NODEPORTS_CHAIN, rules: nodePorts },
    ],
    jumps: serviceJumps().filter((j) => !j.rule.target.includes("SKIFF-SVC-REJECT")),
  };
}
