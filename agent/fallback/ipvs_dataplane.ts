/**
 * The IPVS Service data plane: reads the current dummy-device addresses, ipsets and virtual
 * servers of one namespace, applies the plan of ipvs_plan.ts (`ip -batch`, `ipset restore`,
 * `ipvsadm -R`) and converges its iptables chains. Only where the kernel has IP_VS: creating it
 * elsewhere fails with "this kernel has no IP_VS support: …".
 * @module
 */
import type { Dataplane, SyncReport } from "../dataplane.ts";
import type { ServiceSnapshot } from "../lb/model.ts";
import { run } from "../net/exec.ts";
import { probeIpvs } from "./detect.ts";
import { detectIptablesBackend, type IptablesBackend } from "./iptables_backend.ts";
import { convergeChains, removeChains } from "./iptables_converge.ts";
import { isServiceChain } from "./iptables_rules.ts";
import {
  desiredIpvsState,
  IPSETS,
  IPVS_DEVICE,
  ipvsChains,
  type IpvsContext,
  type IpvsPlan,
  type IpvsState,
  isOurVirtualServer,
  parseAddresses,
  parseIpsetSave,
  parseIpvsadmSave,
  planIpvs,
} from "./ipvs_plan.ts";

/** Options for {@linkcode createIpvsDataplane}. */
export interface IpvsDataplaneOptions extends IpvsContext {
  readonly netns?: string;
  readonly backend?: IptablesBackend;
}

/** Checks IP_VS, detects the iptables flavour, returns the data plane. */
export async function createIpvsDataplane(options: IpvsDataplaneOptions): Promise<IpvsDataplane> {
  const ipvs = await probeIpvs();
  if (!ipvs.ok) throw new Error(`this kernel has no IP_VS support: ${ipvs.detail}`);
  const backend = options.backend ?? await detectIptablesBackend({ netns: options.netns });
  return new IpvsDataplane(backend, options);
}

/** Lines of a plan as they are fed to the tools (for logs and counts). */
export function planSize(plan: IpvsPlan): number {
  return plan.ip.length + plan.ipset.length + plan.ipvsadm.length + plan.ipAfter.length +
    plan.ipsetAfter.length;
}

/** kube-proxy-style IPVS data plane for one namespace. */
export class IpvsDataplane implements Dataplane {
  readonly kind = "ipvs" as const;
  #lastFingerprint = "";

  constructor(readonly backend: IptablesBackend, readonly context: IpvsContext) {}

  #run(argv: string[], stdin?: string, allowFailure = false) {
    return run(argv, { netns: this.backend.netns, stdin, allowFailure });
  }

  /** Reads our part of the kernel: device addresses, SKIFF- ipsets, our virtual servers. */
  async readState(): Promise<IpvsState> {
    const addr = await this.#run(
      ["ip", "-o", "-4", "addr", "show", "dev", IPVS_DEVICE],
      undefined,
      true,
    );
    const device = addr.code === 0;
    const addresses = device ? parseAddresses(addr.stdout) : new Set<string>();
    const sets = parseIpsetSave((await this.#run(["ipset", "save"])).stdout);
    const ipsets = new Map([...sets].filter(([name]) => name in IPSETS));
    const nodeAddresses = new Set(this.context.nodeAddresses);
    const isOurs = (key: string) => isOurVirtualServer(key, addresses, ipsets, nodeAddresses);
    const all = parseIpvsadmSave((await this.#run(["ipvsadm", "-Sn"])).stdout);
    const services = new Map([...all].filter(([key]) => isOurs(key)));
    return { device, addresses, ipsets, services };
  }

  async sync(snapshot: ServiceSnapshot): Promise<SyncReport> {
    const started = performance.now();
    const desired = desiredIpvsState(snapshot, this.context);
    const plan = planIpvs(await this.readState(), desired);
    await this.#apply(plan);
    const { chains, jumps } = ipvsChains(this.context);
    const rules = await convergeChains(this.backend, chains, jumps);
    const fingerprint = JSON.stringify(snapshot);
    const changed = fingerprint === this.#lastFingerprint ? 0 : snapshot.services.length;
    this.#lastFingerprint = fingerprint;
    return {
      durationMs: performance.now() - started,
      operations: planSize(plan) + rules.operations,
      changedServices: planSize(plan) === 0 ? 0 : changed,
    };
  }

  async #apply(plan: IpvsPlan): Promise<void> {
    if (plan.ip.length > 0) await this.#run(["ip", "-batch", "-"], plan.ip.join("\n") + "\n");
    // IPVS must keep conntrack entries so iptables can masquerade its flows.
    await this.#run(["sysctl", "-q", "-w", "net.ipv4.vs.conntrack=1"]);
    if (plan.ipset.length > 0) {
      await this.#run(["ipset", "restore", "-exist"], plan.ipset.join("\n") + "\n");
    }
    if (plan.ipvsadm.length > 0) {
      await this.#run(["ipvsadm", "-R"], plan.ipvsadm.join("\n") + "\n");
    }
    if (plan.ipAfter.length > 0) {
      await this.#run(["ip", "-batch", "-"], plan.ipAfter.join("\n") + "\n");
    }
    if (plan.ipsetAfter.length > 0) {
      await this.#run(["ipset", "restore", "-exist"], plan.ipsetAfter.join("\n") + "\n");
    }
  }

  async uninstall(): Promise<void> {
    const state = await this.readState();
    const removeServers = [...state.services.keys()].map((key) => `-D ${key}`);
    if (removeServers.length > 0) {
      await this.#run(["ipvsadm", "-R"], removeServers.join("\n") + "\n");
    }
    if (state.device) await this.#run(["ip", "link", "del", IPVS_DEVICE]);
    await removeChains(this.backend, ["nat", "filter"], isServiceChain);
    for (const name of state.ipsets.keys()) await this.#run(["ipset", "destroy", name]);
    this.#lastFingerprint = "";
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
