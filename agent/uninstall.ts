/**
 * `skiff uninstall`: removes everything skiff created on a node, whether or not the agent is
 * running: BPF links and pins, iptables chains (both legacy and nft, wherever ours are), the
 * IPVS virtual servers, dummy device and ipsets, the lease, flannel.<VNI> and cni0, subnet.env,
 * the conflist, the CNI plugin shim and its delegates, the unit file, and the state dir.
 * Every step runs even when an earlier one failed; the report says what each did.
 * @module
 */
import { pathExists } from "./fs.ts";
import type { AgentConfig } from "./config.ts";
import { LoaderClient } from "./bpf/loader_client.ts";
import { run } from "./net/exec.ts";
import { uninstallFallback } from "./fallback/fallback.ts";
import { IPVS_DEVICE } from "./fallback/ipvs_plan.ts";
import { openStore } from "./node_agent.ts";
import { silentLogger } from "./log.ts";
import { CONFLIST_NAME } from "./node_agent.ts";

/** One step of the uninstall. */
export interface UninstallStep {
  readonly step: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** Options for {@linkcode uninstallNode}. */
export interface UninstallOptions {
  /** Directory of the systemd unit (default /etc/systemd/system). */
  readonly unitDir?: string;
  /** CNI delegate store of the plugin (default: the config's cni.dataDir). */
  readonly cniDataDir?: string;
  /** Keep the services file (desired state) when it lives in the state dir. Default false. */
  readonly keepServices?: boolean;
}

async function removePath(path: string): Promise<string> {
  if (!(await pathExists(path))) return `${path}: not there`;
  await Deno.remove(path, { recursive: true });
  return `removed ${path}`;
}

/** Removes skiff from the node described by `config`. */
export async function uninstallNode(
  config: AgentConfig,
  options: UninstallOptions = {},
): Promise<UninstallStep[]> {
  const steps: UninstallStep[] = [];
  const netns = config.netns || undefined;
  const step = async (name: string, body: () => Promise<string>) => {
    try {
      steps.push({ step: name, ok: true, detail: await body() });
    } catch (error) {
      steps.push({ step: name, ok: false, detail: (error as Error).message });
    }
  };

  // Stop a running agent first, or it would put back what the next steps remove.
  const unitFile = `${options.unitDir ?? "/etc/systemd/system"}/skiff.service`;
  const systemd = (await pathExists("/run/systemd/system")) && (await pathExists(unitFile));
  if (systemd) {
    await step("stop agent", async () => {
      await run(["systemctl", "disable", "--now", "skiff.service"]);
      return "systemctl disable --now skiff.service";
    });
  }

  await step("bpf", async () => {
    if (!(await pathExists(config.pinDir))) return `${config.pinDir}: not there`;
    await using loader = await LoaderClient.start();
    const r = await loader.remove(config.pinDir);
    return `detached ${r.detached} links, removed ${config.pinDir}`;
  });

  await step("iptables/ipvs", async () => {
    const r = await uninstallFallback({ netns });
    return `${r.chainsRemoved} chains, ${r.ipvsServersRemoved} virtual servers, ` +
      `ipsets [${r.ipsetsRemoved.join(", ")}], ${IPVS_DEVICE} ${
        r.deviceRemoved ? "removed" : "absent"
      }`;
  });

  let vni: number | undefined;
  await step("lease", async () => {
    const statePath = `${config.stateDir}/overlay/overlay.json`;
    let subnet: string | undefined;
    try {
      subnet = JSON.parse(await Deno.readTextFile(statePath)).subnet;
    } catch { /* no state */ }
    const store = await openStore({ ...config, network: undefined }, silentLogger);
    try {
      vni = (await store.getNetworkConfig().catch(() => undefined))?.backend.vni;
      if (!subnet) return "no lease recorded";
      await store.releaseLease(subnet);
      return `released ${subnet}`;
    } finally {
      await store.close();
    }
  });

  await step("devices", async () => {
    const links = await run(["ip", "-j", "-d", "link", "show"], { netns });
    const all = JSON.parse(links.stdout) as {
      ifname: string;
      linkinfo?: { info_kind?: string };
    }[];
    const ours = all.filter((l) =>
      (l.linkinfo?.info_kind === "vxlan" &&
        (vni === undefined ? /^flannel\.\d+$/.test(l.ifname) : l.ifname === `flannel.${vni}`)) ||
      (l.linkinfo?.info_kind === "bridge" && l.ifname === config.cni.bridge)
    );
    for (const l of ours) await run(["ip", "link", "del", l.ifname], { netns });
    return ours.length ? `removed ${ours.map((l) => l.ifname).join(", ")}` : "no skiff devices";
  });

  await step("subnet.env", () => removePath(config.cni.subnetFile));
  await step("conflist", () => removePath(`${config.cni.confDir}/${CONFLIST_NAME}`));
  await step("cni plugin", async () => {
    const shim = `${config.cni.binDir}/skiff`;
    if (!(await pathExists(shim))) return `${shim}: not there`;
    const text = await Deno.readTextFile(shim).catch(() => "");
    if (!text.includes("cni_plugin.ts")) return `${shim} is not skiff's shim; left alone`;
    return await removePath(shim);
  });
  await step("cni delegates", () => removePath(options.cniDataDir ?? config.cni.dataDir));
  await step("unit", () => removePath(unitFile));
  if (systemd) await run(["systemctl", "daemon-reload"], { allowFailure: true });
  await step("state", async () => {
    if (!options.keepServices || !(await pathExists(config.stateDir))) {
      return await removePath(config.stateDir);
    }
    const keep = config.servicesFile.startsWith(config.stateDir + "/") ? config.servicesFile : "";
    const removed: string[] = [];
    for await (const e of Deno.readDir(config.stateDir)) {
      const path = `${config.stateDir}/${e.name}`;
      if (path === keep || path === `${keep}.lock`) continue;
      await Deno.remove(path, { recursive: true });
      removed.push(e.name);
    }
    return `removed ${removed.join(", ") || "nothing"} (kept ${keep})`;
  });
  return steps;
}
