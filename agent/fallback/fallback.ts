/**
 * The fallback's uninstall: leaves no skiff chain, rule, ipset or dummy device in a namespace.
 * (The agent converges the node rules and builds the iptables/ipvs data planes in
 * agent/node_agent.ts from node_rules.ts, iptables_dataplane.ts and ipvs_dataplane.ts.)
 * @module
 */
import { run } from "../net/exec.ts";
import { probeIpvs } from "./detect.ts";
import { detectIptablesBackend, type IptablesBackend, makeBackend } from "./iptables_backend.ts";
import { IptablesDataplane } from "./iptables_dataplane.ts";
import { isServiceChain } from "./iptables_rules.ts";
import {
  IPSETS,
  IPVS_DEVICE,
  isOurVirtualServer,
  parseAddresses,
  parseIpsetSave,
  parseIpvsadmSave,
} from "./ipvs_plan.ts";
import { removeNodeRules } from "./node_rules.ts";

/** Options of {@linkcode uninstallFallback}. */
export interface FallbackOptions {
  /** /run/netns/NAME, or undefined for the agent's own namespace. */
  readonly netns?: string;
  /** A backend to use instead of detecting legacy vs nft. */
  readonly backend?: IptablesBackend;
}

/** What {@linkcode uninstallFallback} removed. */
export interface UninstallReport {
  readonly iptables: string;
  readonly chainsRemoved: number;
  readonly ipsetsRemoved: string[];
  readonly ipvsServersRemoved: number;
  readonly deviceRemoved: boolean;
}

/**
 * Removes every trace of the fallback paths from a namespace: node rule chains, Service
 * chains (iptables and ipvs modes), IPVS virtual servers on skiff's addresses, the dummy
 * device and skiff's ipsets. Safe to run again; safe where nothing was installed.
 */
export async function uninstallFallback(options: FallbackOptions = {}): Promise<UninstallReport> {
  const backend = options.backend ?? await detectIptablesBackend({ netns: options.netns });
  const netns = options.netns ?? backend.netns;
  let ipvsServersRemoved = 0;
  const device = await run(["ip", "-o", "-4", "addr", "show", "dev", IPVS_DEVICE], {
    netns,
    allowFailure: true,
  });
  if ((await probeIpvs()).ok) {
    const addresses = parseAddresses(device.code === 0 ? device.stdout : "");
    const sets = parseIpsetSave(
      (await run(["ipset", "save"], { netns, allowFailure: true })).stdout,
    );
    const servers = parseIpvsadmSave((await run(["ipvsadm", "-Sn"], { netns })).stdout);
    const lines = [...servers.keys()]
      .filter((key) => isOurVirtualServer(key, addresses, sets))
      .map((key) => `-D ${key}`);
    if (lines.length > 0) await run(["ipvsadm", "-R"], { netns, stdin: lines.join("\n") + "\n" });
    ipvsServersRemoved = lines.length;
  }
  if (device.code === 0) await run(["ip", "link", "del", IPVS_DEVICE], { netns });
  let chainsRemoved = 0;
  // Both flavours: a host that once ran with the other one must not keep stale chains.
  const other = makeBackend(backend.mode === "legacy" ? "nft" : "legacy", "uninstall", netns);
  for (const b of [backend, other]) {
    if (b === other) {
      const text = await run([`iptables-${b.mode}-save`], { netns, allowFailure: true });
      if (!text.stdout.includes(":SKIFF-")) continue;
    }
    chainsRemoved += await removeNodeRules(b);
    const before = await b.save(["nat", "filter"]);
    chainsRemoved += [...(before.get("nat")?.keys() ?? []), ...(before.get("filter")?.keys() ?? [])]
      .filter(isServiceChain).length;
    await new IptablesDataplane(b, { nodeName: "" }).uninstall();
  }
  const ipsetsRemoved: string[] = [];
  const sets = await run(["ipset", "list", "-n"], { netns, allowFailure: true });
  for (const name of sets.stdout.split("\n").map((s) => s.trim())) {
    if (name in IPSETS) {
      await run(["ipset", "destroy", name], { netns });
      ipsetsRemoved.push(name);
    }
  }
  return {
    iptables: backend.reason,
    chainsRemoved,
    ipsetsRemoved,
    ipvsServersRemoved,
    deviceRemoved: device.code === 0,
  };
}
