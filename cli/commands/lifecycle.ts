/**
 * `skiff status`, `skiff install`, `skiff uninstall`: the node-level commands. status asks the
 * running agent (GET /statusz on its health address, from the node's own namespace); install
 * and uninstall act on the node directly and work whether or not the agent runs.
 * @module
 */
import {
  type Command,
  EXIT_OK,
  EXIT_RUNTIME,
  parseFlags,
  UsageError,
  usageLine,
} from "../command.ts";
import type { AgentConfig } from "../../agent/config.ts";
import {
  DEFAULT_CONFIG_PATH,
  NODE_CONFIG_FLAGS,
  NODE_CONFIG_HELP,
  nodeConfig,
} from "../node_config.ts";
import { OUTPUT_FLAG, OUTPUT_HELP, outputFormat } from "../output.ts";
import { installNode } from "../../agent/install.ts";
import { uninstallNode } from "../../agent/uninstall.ts";

function healthUrl(config: AgentConfig, path: string): string {
  const address = config.healthAddress;
  if (!address) {
    throw new Error("healthAddress is disabled in the config: status cannot ask the agent");
  }
  const port = address.slice(address.lastIndexOf(":") + 1);
  const host = address.slice(0, address.lastIndexOf(":"));
  const target = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host;
  return `http://${target}:${port}${path}`;
}

type Json = Record<string, unknown>;

function line(label: string, value: unknown): string {
  return `${(label + ":").padEnd(14)}${value ?? "-"}`;
}

/** The human view of /statusz. */
export function formatStatus(s: Json): string {
  const overlay = s.overlay as Json | undefined;
  const uplink = overlay?.uplink as Json | undefined;
  const dp = s.dataplane as Json | undefined;
  const ipt = s.iptables as Json | undefined;
  const store = s.store as Json;
  const svc = s.services as Json | undefined;
  const storeText = store.type === "etcd"
    ? `etcd ${(store.endpoints as string[]).join(",")} prefix ${store.prefix}`
    : `embedded ${store.dir}`;
  const pending = (s.pending as string[]) ?? [];
  return [
    line("Node", s.node),
    line("Health", s.ready ? "ready" : `not ready (waiting for ${pending.join(", ")})`),
    line("Subnet", overlay ? `${overlay.subnet} of ${overlay.network}` : "no lease yet"),
    line(
      "VXLAN",
      overlay ? `${overlay.device} mtu ${overlay.mtu} vtep ${overlay.vtepMac}` : undefined,
    ),
    line("Uplink", uplink ? `${uplink.name} ${uplink.ip} (${uplink.reason})` : undefined),
    line("Data plane", dp ? `${dp.kind} (${dp.reason})` : "not chosen yet"),
    line("iptables", ipt ? `${ipt.mode} (${ipt.reason})` : undefined),
    line("Store", storeText),
    line(
      "Services",
      svc
        ? `${svc.services} (last sync ${
          Number(svc.durationMs).toFixed(1)
        } ms, ${svc.operations} ops, ${svc.at})`
        : undefined,
    ),
    line("Agent", `pid ${s.pid}, up since ${s.startedAt}`),
  ].join("\n");
}

const STATUS_HELP = `Usage: skiff status [-c PATH] [-o table|json]

Shows the node as the running agent sees it: node, subnet, VXLAN device, uplink, the data
plane chosen and why, iptables backend, store, Services and health. Exit 1 when the agent
does not answer, 3 when it answers but is not ready.

Options:
${NODE_CONFIG_HELP}
${OUTPUT_HELP}
  -h, --help             this help`;

/** Exit code of `status` when the agent runs but is not ready. */
export const EXIT_NOT_READY = 3;

export const statusCommand: Command = {
  name: "status",
  summary: "node, subnet, data plane and health, from the running agent",
  async run(args) {
    const parsed = parseFlags(args, {
      ...NODE_CONFIG_FLAGS,
      ...OUTPUT_FLAG,
    }, STATUS_HELP);
    if (!parsed) return EXIT_OK;
    if (parsed.positionals.length) {
      throw new UsageError(
        `unexpected argument "${parsed.positionals[0]}"`,
        usageLine(STATUS_HELP),
      );
    }
    const format = outputFormat(parsed.values.output, STATUS_HELP);
    const config = await nodeConfig(parsed.values, STATUS_HELP);
    const url = healthUrl(config, "/statusz");
    let status: Json;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      status = await res.json();
    } catch (error) {
      console.error(
        `skiff: the agent does not answer at ${url} (${
          (error as Error).message
        }); is it running? (systemctl status skiff)`,
      );
      return EXIT_RUNTIME;
    }
    console.log(format === "json" ? JSON.stringify(status, null, 2) : formatStatus(status));
    return status.ready ? EXIT_OK : EXIT_NOT_READY;
  },
};

const INSTALL_HELP = `Usage: skiff install [-c PATH] [--unit-dir DIR] [--no-start]

Installs skiff on this node: the systemd unit, the CNI plugin (and the reference plugins it
delegates to, when the CNI bin dir lacks them), the conflist, a default config when the
config file does not exist, and the Deno module cache the unit starts from. Starts the
unit when systemd runs this machine.

Options:
${NODE_CONFIG_HELP}
      --unit-dir DIR     where the unit goes (default /etc/systemd/system)
      --no-start         do not enable/start the unit
${OUTPUT_HELP}
  -h, --help             this help`;

export const installCommand: Command = {
  name: "install",
  summary: "install the unit, CNI plugin and conflist on this node",
  async run(args) {
    const parsed = parseFlags(args, {
      ...NODE_CONFIG_FLAGS,
      ...OUTPUT_FLAG,
      "unit-dir": { type: "string" },
      "no-start": { type: "boolean" },
    }, INSTALL_HELP);
    if (!parsed) return EXIT_OK;
    const format = outputFormat(parsed.values.output, INSTALL_HELP);
    const configPath = typeof parsed.values.config === "string"
      ? parsed.values.config
      : DEFAULT_CONFIG_PATH;
    const config = await nodeConfig(parsed.values, INSTALL_HELP);
    const steps = await installNode(config, {
      configPath,
      unitDir: parsed.values["unit-dir"] as string | undefined,
      start: !parsed.values["no-start"],
    });
    if (format === "json") console.log(JSON.stringify(steps, null, 2));
    else for (const s of steps) console.log(`${s.step.padEnd(18)} ${s.detail}`);
    return EXIT_OK;
  },
};

const UNINSTALL_HELP = `Usage: skiff uninstall [-c PATH] [--unit-dir DIR] [--keep-services]

Removes everything skiff created on this node: BPF links and pins, iptables chains (legacy
and nft), IPVS state, the lease, flannel.<VNI> and cni0, subnet.env, the conflist, the CNI
plugin and its saved delegates, the unit file and the state dir. Stop the agent first
(it is stopped for you when systemd runs it). Every step runs even if one fails; exit 1 if any failed.

Options:
${NODE_CONFIG_HELP}
      --unit-dir DIR     where the unit is (default /etc/systemd/system)
      --cni-data-dir DIR the CNI plugin's delegate store (default /var/lib/cni/skiff)
      --keep-services    keep the services file (desired state)
${OUTPUT_HELP}
  -h, --help             this help`;

export const uninstallCommand: Command = {
  name: "uninstall",
  summary: "remove everything skiff created on this node",
  async run(args) {
    const parsed = parseFlags(args, {
      ...NODE_CONFIG_FLAGS,
      ...OUTPUT_FLAG,
      "unit-dir": { type: "string" },
      "cni-data-dir": { type: "string" },
      "keep-services": { type: "boolean" },
    }, UNINSTALL_HELP);
    if (!parsed) return EXIT_OK;
    const format = outputFormat(parsed.values.output, UNINSTALL_HELP);
    const config = await nodeConfig(parsed.values, UNINSTALL_HELP);
    const steps = await uninstallNode(config, {
      unitDir: parsed.values["unit-dir"] as string | undefined,
      cniDataDir: parsed.values["cni-data-dir"] as string | undefined,
      keepServices: Boolean(parsed.values["keep-services"]),
    });
    if (format === "json") console.log(JSON.stringify(steps, null, 2));
    else {for (const s of steps) {
        console.log(`${s.ok ? "ok  " : "FAIL"} ${s.step.padEnd(16)} ${s.detail}`);
      }}
    return steps.every((s) => s.ok) ? EXIT_OK : EXIT_RUNTIME;
  },
};
