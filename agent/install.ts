/**
 * `skiff install`: puts skiff on a node — the systemd unit, the CNI plugin shim (plus the
 * reference plugins it delegates to, where the bin dir lacks them), the conflist, a config
 * file when none exists, and a warm Deno cache so the unit starts with `--cached-only`.
 * Starts the unit when systemd runs the machine; otherwise says how to start the agent.
 * @module
 */
import { pathExists } from "./fs.ts";
import type { AgentConfig } from "./config.ts";
import { installPlugin, linkReferencePlugins } from "./cni/install.ts";
import { writeConflist } from "./cni/conflist.ts";
import { writeFileAtomic } from "./cni/atomic_file.ts";
import { CONFLIST_NAME, conflistOptions } from "./node_agent.ts";
import { execStartArgv, PROJECT_ROOT, renderUnit } from "./systemd/unit.ts";
import { run } from "./net/exec.ts";

/**
 * The cluster network a fresh config names (kubeadm's flannel default). It only initialises an
 * empty store; a store that already has a network config keeps it.
 */
export const DEFAULT_NETWORK = {
  Network: "10.244.0.0/16",
  SubnetLen: 24,
  Backend: { Type: "vxlan", VNI: 1, Port: 8472 },
};

/** One step of the install. */
export interface InstallStep {
  readonly step: string;
  readonly detail: string;
}

/** Options for {@linkcode installNode}. */
export interface InstallNodeOptions {
  /** Where the config file is (written with defaults when missing). */
  readonly configPath: string;
  /** Directory of the unit (default /etc/systemd/system). */
  readonly unitDir?: string;
  /** Where the reference plugins are taken from (default /usr/lib/cni). */
  readonly referencePlugins?: string;
  /** Start the unit when systemd is PID 1 (default true). */
  readonly start?: boolean;
}

/** Installs skiff for `config`; throws on the first failing step (earlier steps stay). */
export async function installNode(
  config: AgentConfig,
  options: InstallNodeOptions,
): Promise<InstallStep[]> {
  const steps: InstallStep[] = [];
  const unitDir = options.unitDir ?? "/etc/systemd/system";

  if (!(await pathExists(options.configPath))) {
    await Deno.mkdir(options.configPath.slice(0, options.configPath.lastIndexOf("/")), {
      recursive: true,
    });
    await writeFileAtomic(
      options.configPath,
      JSON.stringify({ nodeName: config.nodeName, network: DEFAULT_NETWORK }, null, 2) + "\n",
      { mode: 0o644 },
    );
    steps.push({ step: "config", detail: `wrote ${options.configPath} (defaults)` });
  } else steps.push({ step: "config", detail: `kept ${options.configPath}` });

  for (const dir of [config.stateDir, config.cni.confDir, config.cni.binDir, unitDir]) {
    await Deno.mkdir(dir, { recursive: true });
  }

  const unit = (await renderUnit()).replace(
    "--config /etc/skiff/config.json",
    `--config ${options.configPath}`,
  );
  await writeFileAtomic(`${unitDir}/skiff.service`, unit, { mode: 0o644 });
  steps.push({ step: "unit", detail: `wrote ${unitDir}/skiff.service` });

  const shim = await installPlugin(config.cni.binDir, { socket: config.cni.socket || undefined });
  steps.push({ step: "cni plugin", detail: `installed ${shim}` });
  const missing: string[] = [];
  for (const name of ["bridge", "host-local", "portmap", "loopback"]) {
    if (!(await pathExists(`${config.cni.binDir}/${name}`))) missing.push(name);
  }
  if (missing.length) {
    await linkReferencePlugins(config.cni.binDir, missing, options.referencePlugins);
    steps.push({ step: "reference plugins", detail: `linked ${missing.join(", ")}` });
  }
  const list = `${config.cni.confDir}/${CONFLIST_NAME}`;
  await writeConflist(list, conflistOptions(config));
  steps.push({ step: "conflist", detail: `wrote ${list}` });

  const argv = execStartArgv(unit);
  const denoDir = /^Environment=DENO_DIR=(.*)$/m.exec(unit)?.[1] ?? `${config.stateDir}/deno-cache`;
  await run([argv[0], "cache", `${PROJECT_ROOT}/agent/main.ts`], {
    env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1" },
  });
  steps.push({ step: "deno cache", detail: `agent modules cached in ${denoDir}` });

  if ((options.start ?? true) && (await pathExists("/run/systemd/system"))) {
    await run(["systemctl", "daemon-reload"]);
    await run(["systemctl", "enable", "--now", "skiff.service"]);
    steps.push({ step: "service", detail: "systemctl enable --now skiff.service" });
  } else {
    steps.push({
      step: "service",
      detail: `systemd is not running here; start the agent with: ${argv.join(" ")}`,
    });
  }
  return steps;
}
