/**
 * `skiff doctor [--fix]`: runs the node checks of agent/doctor.ts with the config's paths and
 * netns, prints check/status/detail/fix, and exits 1 when any check fails (0 otherwise), so
 * a provisioning script can gate on it.
 * @module
 */
import type { AgentConfig } from "../../agent/config.ts";
import { type CheckResult, type DoctorContext, runDoctor } from "../../agent/doctor.ts";
import { run } from "../../agent/net/exec.ts";
import { readLink } from "../../agent/net/iproute.ts";
import { detectUplink } from "../../agent/overlay/uplink.ts";
import { type Command, EXIT_OK, EXIT_RUNTIME, parseFlags } from "../command.ts";
import { NODE_CONFIG_FLAGS, NODE_CONFIG_HELP, nodeConfig } from "../node_config.ts";
import { OUTPUT_FLAG, OUTPUT_HELP, outputFormat, printView } from "../output.ts";
import { localAddresses, openNodeStore } from "./overlay_view.ts";
import { noPositionals } from "./view_common.ts";

const HELP = `Usage: skiff doctor [--fix] [-o table|json] [--config PATH] [--netns PATH]

Checks the node for conditions that break Pod and Service networking (kernel features,
cgroup v2, bpffs, iptables legacy/nft mix, VXLAN MTU and checksum offload, NAT-only
uplink, subnet.env, leftover state) and says what to do. Exit status: 0 when no check
fails (warnings allowed), 1 when one does.

Options:
      --fix              apply the safe known fixes (e.g. VXLAN checksum offload)
${OUTPUT_HELP}
${NODE_CONFIG_HELP}
  -h, --help             this help`;

/** The VXLAN device: flannel.<VNI> from the store's network config, else flannel.1. */
async function vxlanDevice(config: AgentConfig): Promise<string> {
  try {
    const store = await openNodeStore(config);
    try {
      return `flannel.${(await store.getNetworkConfig()).backend.vni}`;
    } finally {
      await store.close();
    }
  } catch {
    return "flannel.1"; // no store yet: flannel's default VNI
  }
}

/**
 * Whether an agent answers on the health address. Only local addresses are probed (0.0.0.0
 * and loopback as 127.0.0.1, or an address of the node), inside the node's netns, so the
 * probe never leaves the node.
 */
async function agentAnswers(config: AgentConfig): Promise<boolean> {
  if (!config.healthAddress) return false;
  const colon = config.healthAddress.lastIndexOf(":");
  const host = config.healthAddress.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = config.healthAddress.slice(colon + 1);
  let target: string;
  if (host === "0.0.0.0" || host === "localhost" || host.startsWith("127.")) {
    target = "127.0.0.1";
  } else if ((await localAddresses(config.netns)).includes(host)) {
    target = host;
  } else {
    return false;
  }
  const out = await run(
    [
      "curl",
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-m",
      "1",
      `http://${target}:${port}/healthz`,
    ],
    { allowFailure: true, ...(config.netns && { netns: config.netns }) },
  );
  return out.code === 0 && out.stdout.trim() !== "000";
}

async function uplinkName(config: AgentConfig): Promise<string | undefined> {
  if (config.uplink.iface) {
    return (await readLink(config.uplink.iface, config.netns)) ? config.uplink.iface : undefined;
  }
  try {
    return (await detectUplink(config.uplink, config.netns)).name;
  } catch {
    return undefined;
  }
}

/** The doctor context of a node config. */
export async function doctorContext(config: AgentConfig): Promise<DoctorContext> {
  return {
    netns: config.netns,
    vxlanDevice: await vxlanDevice(config),
    uplink: await uplinkName(config),
    subnetFile: config.cni.subnetFile,
    pinDir: config.pinDir,
    cgroupPath: config.cgroupPath,
    agentRunning: await agentAnswers(config),
  };
}

function fixCell(r: CheckResult): string {
  if (!r.fix) return "-";
  return r.fixed ? `applied: ${r.fix}` : r.fix;
}

/** `skiff doctor`. */
export const doctorCommand: Command = {
  name: "doctor",
  summary: "check the node for known networking problems (--fix applies safe fixes)",
  async run(args) {
    const flags = parseFlags(
      args,
      { ...OUTPUT_FLAG, ...NODE_CONFIG_FLAGS, fix: { type: "boolean" } },
      HELP,
    );
    if (!flags) return EXIT_OK;
    noPositionals(flags.positionals, HELP);
    const format = outputFormat(flags.values.output, HELP);
    const config = await nodeConfig(flags.values, HELP);
    const ctx = await doctorContext(config);
    const checks = await runDoctor(ctx, { fix: flags.values.fix === true });
    const failed = checks.filter((c) => c.status === "fail").length;
    printView(format, {
      context: ctx,
      ok: failed === 0,
      checks: checks.map((c) => ({
        id: c.id,
        status: c.status,
        detail: c.detail,
        fix: c.fix ?? null,
        fixed: c.fixed ?? false,
      })),
    }, {
      headers: ["CHECK", "STATUS", "DETAIL", "FIX"],
      rows: checks.map((c) => [c.id, c.status, c.detail, fixCell(c)]),
      empty: "No checks ran.",
    });
    return failed === 0 ? EXIT_OK : EXIT_RUNTIME;
  },
};
