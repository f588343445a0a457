/**
 * The iptables rules every node needs, as flannel installs them: masquerade of Pod traffic
 * leaving the cluster Network (ip-masq), none between Pods, marked Service traffic left to the
 * Service path, and FORWARD accepts for the Network. Rules are data in skiff's own chains
 * (SKIFF-POSTRTG, SKIFF-FWD), converged on start and every resync, removed by uninstall.
 * @module
 */
import { formatCidr, parseCidr } from "../net/ipv4.ts";
import type { IptablesBackend } from "./iptables_backend.ts";
import { convergeChains, type ConvergeResult, removeChains } from "./iptables_converge.ts";
import type { Jump, OwnedChain, Rule } from "./iptables_text.ts";

/** skiff's node chains. */
export const NODE_POSTROUTING_CHAIN = "SKIFF-POSTRTG";
export const NODE_FORWARD_CHAIN = "SKIFF-FWD";

/** The mark the Service path sets on traffic it masquerades itself (kube-proxy's bit). */
export const MASQUERADE_MARK = "0x4000/0x4000";

/** What the node rules depend on. */
export interface NodeRulesConfig {
  /** The cluster Network (all Pod subnets), e.g. "10.244.0.0/16". */
  readonly clusterCidr: string;
  /** This node's Pod subnet, e.g. "10.244.1.0/24". */
  readonly podCidr: string;
}

/** The desired node rules: chains and the jumps into them. */
export interface NodeRules {
  readonly chains: OwnedChain[];
  readonly jumps: Jump[];
}

function checkConfig(config: NodeRulesConfig): { cluster: string; pod: string } {
  const cluster = formatCidr(parseCidr(config.clusterCidr));
  const pod = formatCidr(parseCidr(config.podCidr));
  return { cluster, pod };
}

/** Pure: the rules for a node (throws TypeError naming a bad CIDR). */
export function nodeRules(config: NodeRulesConfig): NodeRules {
  const { cluster, pod } = checkConfig(config);
  const masq = ["-j", "MASQUERADE", "--random-fully"];
  const postrouting: Rule[] = [
    {
      comment: "skiff: Service traffic marked for masquerade is left to SKIFF-SVC-POSTRTG",
      matches: ["-m", "mark", "--mark", MASQUERADE_MARK],
      target: ["-j", "RETURN"],
    },
    {
      source: cluster,
      destination: cluster,
      comment: "skiff: Pod to Pod traffic keeps Pod addresses",
      target: ["-j", "RETURN"],
    },
    {
      source: `!${cluster}`,
      destination: pod,
      comment: "skiff: traffic arriving for local Pods keeps its source",
      target: ["-j", "RETURN"],
    },
    {
      source: cluster,
      destination: "!224.0.0.0/4",
      comment: "skiff: Pod traffic leaving the cluster Network is masqueraded",
      target: masq,
    },
    {
      source: `!${cluster}`,
      destination: cluster,
      comment: "skiff: host traffic to remote Pods is masqueraded",
      target: masq,
    },
  ];
  const forward: Rule[] = [
    {
      source: cluster,
      comment: "skiff: forward traffic from the cluster Network",
      target: ["-j", "ACCEPT"],
    },
    {
      destination: cluster,
      comment: "skiff: forward traffic to the cluster Network",
      target: ["-j", "ACCEPT"],
    },
  ];
  return {
    chains: [
      { table: "nat", name: NODE_POSTROUTING_CHAIN, rules: postrouting },
      { table: "filter", name: NODE_FORWARD_CHAIN, rules: forward },
    ],
    jumps: [
      {
        table: "nat",
        from: "POSTROUTING",
        rule: { comment: "skiff: node masquerade rules", target: ["-j", NODE_POSTROUTING_CHAIN] },
      },
      {
        table: "filter",
        from: "FORWARD",
        rule: { comment: "skiff: node forward rules", target: ["-j", NODE_FORWARD_CHAIN] },
      },
    ],
  };
}

/** Converges the node rules: rewrites only a chain that differs, repairs a missing jump. */
export function ensureNodeRules(
  backend: IptablesBackend,
  config: NodeRulesConfig,
): Promise<ConvergeResult> {
  const rules = nodeRules(config);
  return convergeChains(backend, rules.chains, rules.jumps);
}

/** Removes the node chains and every jump into them; returns how many chains were deleted. */
export function removeNodeRules(backend: IptablesBackend): Promise<number> {
  const ours = new Set([NODE_POSTROUTING_CHAIN, NODE_FORWARD_CHAIN]);
  return removeChains(backend, ["nat", "filter"], (name) => ours.has(name));
}
