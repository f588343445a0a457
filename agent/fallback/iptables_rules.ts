/**
 * kube-proxy-style Service rules as data (pure): a dispatch chain SKIFF-SERVICES, per Service
 * port a SKIFF-SVC-<hash> (cluster endpoints), SKIFF-SVL-<hash> (node-local endpoints) and
 * SKIFF-EXT-<hash> (external destinations), per endpoint a SKIFF-SEP-<hash> that DNATs.
 *
 * How it works: a new flow to a ClusterIP jumps from SKIFF-SERVICES to the Service chain, which
 * picks endpoint i of n with `statistic --probability 1/(n-i)` (uniform overall) unless a
 * `recent` list pins the client (ClientIP affinity). Traffic that needs SNAT is marked in
 * SKIFF-MARK-MASQ and masqueraded once in SKIFF-SVC-POSTRTG. Services without endpoints are
 * REJECTed in the filter chain SKIFF-SVC-REJECT. Conntrack keeps established flows on their
 * endpoint, so rewriting a chain affects new flows only.
 * @module
 */
import { createHash } from "node:crypto";
import {
  type Endpoint,
  endpointsForNewFlows,
  type ServiceEntry,
  serviceKey,
  type ServicePort,
  type ServiceSnapshot,
} from "../lb/model.ts";
import { formatCidr, parseCidr, parseIpv4 } from "../net/ipv4.ts";
import type { Jump, OwnedChain, Rule } from "./iptables_text.ts";
import { checkSnapshot } from "./service_check.ts";

export const SERVICES_CHAIN = "SKIFF-SERVICES";
export const NODEPORTS_CHAIN = "SKIFF-NODEPORTS";
export const MARK_MASQ_CHAIN = "SKIFF-MARK-MASQ";
export const SVC_POSTROUTING_CHAIN = "SKIFF-SVC-POSTRTG";
export const SVC_FORWARD_CHAIN = "SKIFF-SVC-FWD";
export const SVC_REJECT_CHAIN = "SKIFF-SVC-REJECT";
/** The masquerade mark bit (kube-proxy's), shared with the node rules. */
export const MASQ_MARK = "0x4000/0x4000";

const SERVICE_CHAIN =
  /^SKIFF-(SERVICES|NODEPORTS|MARK-MASQ|SVC-POSTRTG|SVC-FWD|SVC-REJECT|(SVC|SVL|EXT|SEP)-[A-Z2-7]{16})$/;

/** True for every chain the iptables Service data plane owns (not the node rules' chains). */
export function isServiceChain(name: string): boolean {
  return SERVICE_CHAIN.test(name);
}

/** What the rules depend on besides the snapshot. */
export interface ServiceRulesContext {
  /** This node's name, for traffic policy Local. */
  readonly nodeName: string;
  /** The cluster Network; traffic to a ClusterIP from outside it is masqueraded. */
  readonly clusterCidr?: string;
  /** Addresses NodePorts answer on; default every local address (`addrtype LOCAL`). */
  readonly nodePortAddresses?: readonly string[];
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** kube-proxy's chain suffix: base32 of sha256, 16 characters. */
export function chainHash(text: string): string {
  const bytes = createHash("sha256").update(text).digest();
  let bits = 0, value = 0, out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= 0xff;
    if (out.length === 16) break;
  }
  return out;
}

/**
 * The probability text for picking 1 of `k`, exactly as iptables-save prints it: the kernel
 * keeps round(2^31·p) and prints it back with 11 decimals, so desired and saved text compare.
 */
export function probability(k: number): string {
  const stored = Math.round(0x80000000 / k);
  return (stored / 0x80000000).toFixed(11);
}

/** "ns/name:port" (kube's ServicePortName), "ns/name" for an unnamed port. */
export function servicePortName(entry: ServiceEntry, port: ServicePort): string {
  const key = serviceKey(entry.service);
  return port.name === "" ? key : `${key}:${port.name}`;
}

/** One endpoint address of a Service port. */
export interface Target {
  readonly ip: string;
  readonly port: number;
}

/** UDP frontends and their endpoints, for clearing stale conntrack entries. */
export interface UdpFrontend {
  /** ClusterIPs, externalIPs and LoadBalancer IPs. */
  readonly ips: readonly string[];
  readonly port: number;
  readonly nodePort?: number;
  /** Every endpoint new flows may go to ("ip:port"). */
  readonly targets: readonly string[];
}

/** The rules one Service contributes. */
export interface ServiceRules {
  readonly key: string;
  /** Its own chains (SVC, SVL, EXT, SEP). */
  readonly chains: OwnedChain[];
  /** Its rules in SKIFF-SERVICES, SKIFF-NODEPORTS and SKIFF-SVC-REJECT. */
  readonly services: Rule[];
  readonly nodePorts: Rule[];
  readonly reject: Rule[];
  /** Per UDP port name. */
  readonly udp: Map<string, UdpFrontend>;
}

function targetOf(endpoint: Endpoint, port: ServicePort): Target {
  return { ip: endpoint.ip, port: endpoint.ports?.[port.name] ?? port.targetPort };
}

function byAddress(a: Target, b: Target): number {
  return parseIpv4(a.ip) - parseIpv4(b.ip) || a.port - b.port;
}

function portMatch(proto: string, port: number): string[] {
  return ["-m", proto, "--dport", String(port)];
}

/** Pure: the rules of one Service (the snapshot must have passed checkSnapshot). */
export function serviceRules(entry: ServiceEntry, ctx: ServiceRulesContext): ServiceRules {
  const s = entry.service;
  const chains: OwnedChain[] = [];
  const services: Rule[] = [], nodePorts: Rule[] = [], reject: Rule[] = [];
  const udp = new Map<string, UdpFrontend>();
  const clusterCidr = ctx.clusterCidr ? formatCidr(parseCidr(ctx.clusterCidr)) : undefined;
  const sepChains = new Map<string, OwnedChain>();
  const affinity = s.sessionAffinity === "ClientIP";

  for (const port of s.ports) {
    const name = servicePortName(entry, port);
    const proto = port.protocol.toLowerCase() as "tcp" | "udp";
    const hash = chainHash(`${name}/${proto}`);
    const svcChain = `SKIFF-SVC-${hash}`, svlChain = `SKIFF-SVL-${hash}`;
    const extChain = `SKIFF-EXT-${hash}`;
    const cluster = endpointsForNewFlows(entry.endpoints).map((e) => targetOf(e, port))
      .sort(byAddress);
    const local = endpointsForNewFlows(entry.endpoints.filter((e) => e.node === ctx.nodeName))
      .map((e) => targetOf(e, port)).sort(byAddress);
    const internal = s.internalTrafficPolicy === "Local" ? local : cluster;
    const internalChain = s.internalTrafficPolicy === "Local" ? svlChain : svcChain;
    const externals = [...s.externalIPs, ...s.loadBalancerIPs];
    const hasExternal = port.nodePort !== undefined || externals.length > 0;
    const externalLocal = s.externalTrafficPolicy === "Local";

    const sepNames = new Map<Target, string>();
    const sepName = (t: Target): string => {
      let n = sepNames.get(t);
      if (n === undefined) {
        n = `SKIFF-SEP-${chainHash(`${name}/${proto}/${t.ip}:${t.port}`)}`;
        sepNames.set(t, n);
      }
      return n;
    };
    const pick = (targets: Target[]): Rule[] => {
      const rules: Rule[] = [];
      const comment = (t: Target) => `${name} -> ${t.ip}:${t.port}`;
      if (affinity) {
        for (const t of targets) {
          rules.push({
            comment: comment(t),
            matches: [
              "-m",
              "recent",
              "--rcheck",
              "--seconds",
              String(s.affinityTimeoutSeconds),
              "--reap",
              "--name",
              sepName(t),
              "--mask",
              "255.255.255.255",
              "--rsource",
            ],
            target: ["-j", sepName(t)],
          });
        }
      }
      targets.forEach((t, i) => {
        const left = targets.length - i;
        rules.push({
          comment: comment(t),
          matches: left > 1
            ? ["-m", "statistic", "--mode", "random", "--probability", probability(left)]
            : [],
          target: ["-j", sepName(t)],
        });
        if (!sepChains.has(sepName(t))) {
          sepChains.set(sepName(t), {
            table: "nat",
            name: sepName(t),
            rules: [
              { source: t.ip, comment: name, target: ["-j", MARK_MASQ_CHAIN] },
              {
                protocol: proto,
                comment: name,
                matches: [
                  ...(affinity
                    ? [
                      "-m",
                      "recent",
                      "--set",
                      "--name",
                      sepName(t),
                      "--mask",
                      "255.255.255.255",
                      "--rsource",
                    ]
                    : []),
                  "-m",
                  proto,
                ],
                target: ["-j", "DNAT", "--to-destination", `${t.ip}:${t.port}`],
              },
            ],
          });
        }
      });
      return rules;
    };

    if (cluster.length > 0) {
      const masq: Rule[] = clusterCidr === undefined ? [] : s.clusterIPs.map((vip) => ({
        source: `!${clusterCidr}`,
        destination: vip,
        protocol: proto,
        comment: `${name} cluster IP`,
        matches: portMatch(proto, port.port),
        target: ["-j", MARK_MASQ_CHAIN],
      }));
      chains.push({ table: "nat", name: svcChain, rules: [...masq, ...pick(cluster)] });
    }
    const needLocal = s.internalTrafficPolicy === "Local" || (externalLocal && hasExternal);
    if (needLocal && local.length > 0) {
      chains.push({ table: "nat", name: svlChain, rules: pick(local) });
    }
    if (hasExternal && cluster.length > 0) {
      const ext: Rule[] = [];
      if (!externalLocal) {
        ext.push({
          comment: `masquerade traffic for ${name} external destinations`,
          target: ["-j", MARK_MASQ_CHAIN],
        }, { comment: `${name} external destinations`, target: ["-j", svcChain] });
      } else {
        if (clusterCidr !== undefined) {
          ext.push({
            source: clusterCidr,
            comment: `pod traffic for ${name} external destinations`,
            target: ["-j", svcChain],
          });
        }
        ext.push({
          comment: `masquerade LOCAL traffic for ${name} external destinations`,
          matches: ["-m", "addrtype", "--src-type", "LOCAL"],
          target: ["-j", MARK_MASQ_CHAIN],
        }, {
          comment: `route LOCAL traffic for ${name} external destinations`,
          matches: ["-m", "addrtype", "--src-type", "LOCAL"],
          target: ["-j", svcChain],
        });
        if (local.length > 0) {
          ext.push({ comment: `${name} local endpoints`, target: ["-j", svlChain] });
        }
      }
      chains.push({ table: "nat", name: extChain, rules: ext });
    }

    // Dispatch, or a REJECT/DROP where no endpoint can take the flow.
    const noEndpoints = (destination: string | undefined, matches: string[]): Rule => ({
      destination,
      protocol: proto,
      comment: `${name} has no endpoints`,
      matches,
      target: ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
    });
    for (const vip of s.clusterIPs) {
      if (internal.length > 0) {
        services.push({
          destination: vip,
          protocol: proto,
          comment: `${name} cluster IP`,
          matches: portMatch(proto, port.port),
          target: ["-j", internalChain],
        });
      } else {
        reject.push(noEndpoints(vip, portMatch(proto, port.port)));
      }
    }
    for (const ip of externals) {
      if (cluster.length > 0) {
        services.push({
          destination: ip,
          protocol: proto,
          comment: `${name} external IP`,
          matches: portMatch(proto, port.port),
          target: ["-j", extChain],
        });
        if (externalLocal && local.length === 0) {
          reject.push({
            destination: ip,
            protocol: proto,
            comment: `${name} has no local endpoints`,
            matches: portMatch(proto, port.port),
            target: ["-j", "DROP"],
          });
        }
      } else {
        reject.push(noEndpoints(ip, portMatch(proto, port.port)));
      }
    }
    if (port.nodePort !== undefined) {
      const localDst = ["-m", "addrtype", "--dst-type", "LOCAL"];
      if (cluster.length > 0) {
        nodePorts.push({
          protocol: proto,
          comment: name,
          matches: portMatch(proto, port.nodePort),
          target: ["-j", extChain],
        });
        if (externalLocal && local.length === 0) {
          reject.push({
            protocol: proto,
            comment: `${name} has no local endpoints`,
            matches: [...localDst, ...portMatch(proto, port.nodePort)],
            target: ["-j", "DROP"],
          });
        }
      } else {
        reject.push(noEndpoints(undefined, [...localDst, ...portMatch(proto, port.nodePort)]));
      }
    }
    if (proto === "udp") {
      const targets = new Set([...cluster, ...local].map((t) => `${t.ip}:${t.port}`));
      udp.set(port.name, {
        ips: [...s.clusterIPs, ...externals],
        port: port.port,
        nodePort: port.nodePort,
        targets: [...targets].sort(),
      });
    }
  }
  chains.push(...[...sepChains.values()].sort((a, b) => a.name < b.name ? -1 : 1));
  return { key: serviceKey(s), chains, services, nodePorts, reject, udp };
}

/** The chains every node has whatever the Services: marking, masquerade, forward accepts. */
export function baseChains(): OwnedChain[] {
  return [
    {
      table: "nat",
      name: MARK_MASQ_CHAIN,
      rules: [{
        comment: "skiff: mark for masquerade",
        target: ["-j", "MARK", "--set-xmark", MASQ_MARK],
      }],
    },
    {
      table: "nat",
      name: SVC_POSTROUTING_CHAIN,
      rules: [
        {
          comment: "skiff: only Service traffic marked for masquerade",
          matches: ["-m", "mark", "!", "--mark", MASQ_MARK],
          target: ["-j", "RETURN"],
        },
        {
          comment: "skiff: clear the mark so a re-traversal is not masqueraded twice",
          target: ["-j", "MARK", "--set-xmark", "0x4000/0x0"],
        },
        {
          comment: "skiff: Service traffic requiring SNAT",
          target: ["-j", "MASQUERADE", "--random-fully"],
        },
      ],
    },
    {
      table: "filter",
      name: SVC_FORWARD_CHAIN,
      rules: [
        {
          comment: "skiff: forward Service traffic marked for masquerade",
          matches: ["-m", "mark", "--mark", MASQ_MARK],
          target: ["-j", "ACCEPT"],
        },
        {
          comment: "skiff: forward replies of Service flows",
          matches: ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"],
          target: ["-j", "ACCEPT"],
        },
      ],
    },
  ];
}

/** Jumps from the built-in chains into the Service chains. */
export function serviceJumps(): Jump[] {
  const portals = { comment: "skiff: Service portals", target: ["-j", SERVICES_CHAIN] };
  const rejectNew: Rule = {
    comment: "skiff: Services without endpoints",
    matches: ["-m", "conntrack", "--ctstate", "NEW"],
    target: ["-j", SVC_REJECT_CHAIN],
  };
  return [
    { table: "nat", from: "PREROUTING", rule: portals },
    { table: "nat", from: "OUTPUT", rule: portals },
    {
      table: "nat",
      from: "POSTROUTING",
      rule: { comment: "skiff: Service masquerade", target: ["-j", SVC_POSTROUTING_CHAIN] },
    },
    {
      table: "filter",
      from: "FORWARD",
      rule: { comment: "skiff: Service forwarding", target: ["-j", SVC_FORWARD_CHAIN] },
    },
    { table: "filter", from: "INPUT", rule: rejectNew },
    { table: "filter", from: "FORWARD", rule: rejectNew },
    { table: "filter", from: "OUTPUT", rule: rejectNew },
  ];
}

/** Pure: the three dispatch chains from every Service's contribution (sorted by key). */
export function dispatchChains(
  perService: readonly ServiceRules[],
  ctx: ServiceRulesContext,
): OwnedChain[] {
  const sorted = [...perService].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  const nodePortJumps: Rule[] = ctx.nodePortAddresses === undefined
    ? [{
      comment: "skiff: NodePorts on local addresses; this must be the last rule",
      matches: ["-m", "addrtype", "--dst-type", "LOCAL"],
      target: ["-j", NODEPORTS_CHAIN],
    }]
    : ctx.nodePortAddresses.map((ip) => ({
      destination: ip,
      comment: "skiff: NodePorts on a node address",
      target: ["-j", NODEPORTS_CHAIN],
    }));
  return [
    {
      table: "nat",
      name: SERVICES_CHAIN,
      rules: [...sorted.flatMap((r) => r.services), ...nodePortJumps],
    },
    { table: "nat", name: NODEPORTS_CHAIN, rules: sorted.flatMap((r) => r.nodePorts) },
    { table: "filter", name: SVC_REJECT_CHAIN, rules: sorted.flatMap((r) => r.reject) },
  ];
}

/** Everything for a snapshot (checked first): all chains and the jumps into them. */
export function generateServiceRules(
  snapshot: ServiceSnapshot,
  ctx: ServiceRulesContext,
): { chains: OwnedChain[]; jumps: Jump[]; perService: ServiceRules[] } {
  checkSnapshot(snapshot);
  const perService = snapshot.services.map((e) => serviceRules(e, ctx));
  return {
    chains: [
      ...baseChains(),
      ...dispatchChains(perService, ctx),
      ...perService.flatMap((r) => r.chains),
    ],
    jumps: serviceJumps(),
    perService,
  };
}
