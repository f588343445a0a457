/**
 * A one-node CNI fixture for tests: a node netns "sk<id>n0", a temp root with subnet.env, a
 * bin dir (reference plugins + the skiff shim), the conflist, and state dirs; every netns
 * named sk<id>* and the temp root are removed on dispose.
 * @module
 */

import { run } from "../../agent/net/exec.ts";
import type { ConflistOptions } from "../../agent/cni/conflist.ts";
import { installPlugin, linkReferencePlugins, PROJECT_ROOT } from "../../agent/cni/install.ts";
import { setupNodeCni } from "../../agent/cni/node_setup.ts";
import type { PodDriverOptions } from "../../agent/cni/runtime.ts";
import { type ExecOutput, execPlugin } from "../../agent/cni/invoke.ts";
import { listDelegates } from "../../agent/cni/store.ts";
import { formatSubnetEnv } from "../../agent/cni/subnet_env.ts";

/** A node namespace with everything the CNI chain needs. */
export interface CniNode extends AsyncDisposable {
  readonly runId: string;
  /** Prefix of every kernel name: "sk" + runId. */
  readonly prefix: string;
  readonly nsName: string;
  readonly nsPath: string;
  readonly root: string;
  readonly binDir: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly ipamDataDir: string;
  readonly confFile: string;
  readonly stateDir: string;
  readonly driver: PodDriverOptions;
  /** Creates an empty netns named prefix+suffix; returns its path. */
  addNetns(suffix: string): Promise<string>;
  /** Runs argv inside the node namespace. */
  run(argv: string[]): Promise<string>;
  /** Runs the installed plugin `type` (default skiff) in the node namespace. */
  plugin(env: Record<string, string>, stdin: string, type?: string): Promise<ExecOutput>;
  /** What the node holds now: delegate files, IP allocations, links, iptables lines. */
  snapshot(): Promise<NodeSnapshot>;
  /**
   * Starts the agent's CNI socket server in the node namespace and reinstalls the shim to use
   * it (the fast path); stopped on dispose or by the returned function.
   */
  startServer(): Promise<() => Promise<void>>;
  /** The socket path startServer uses. */
  readonly socket: string;
}

/** What a node holds: used to prove a request left nothing behind. */
export interface NodeSnapshot {
  delegates: string[];
  allocations: string[];
  links: string[];
  natRules: string[];
}

/** Options of {@linkcode createCniNode}. */
export interface CniNodeOptions {
  network?: string;
  subnet?: string;
  mtu?: number;
  ipMasq?: boolean;
  conflist?: ConflistOptions;
  /** Install the shim and the conflist. Default true. */
  install?: boolean;
  /** On a lab node: the Pod names' prefix after the lab prefix (default "p"). */
  podPrefix?: string;
  /** Use this subnet.env (e.g. the overlay's) instead of writing one. */
  subnetFile?: string;
  /** Use this existing namespace (a lab node) instead of making one; its prefix names Pods. */
  onNode?: { readonly name: string; readonly nsPath: string; readonly prefix: string };
}

/** Deletes every netns whose name starts with `prefix`. */
export async function deleteNetnsWithPrefix(prefix: string): Promise<void> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir("/run/netns")) {
      if (e.name.startsWith(prefix)) names.push(e.name);
    }
  } catch {
    return; // no /run/netns: nothing to delete
  }
  for (const name of names) await run(["ip", "netns", "del", name], { allowFailure: true });
}

/** Builds the fixture; dispose removes it all. */
export async function createCniNode(options: CniNodeOptions = {}): Promise<CniNode> {
  const runId = options.onNode?.prefix.slice(2) ??
    crypto.randomUUID().replaceAll("-", "").slice(0, 5);
  const prefix = options.onNode?.prefix ?? `sk${runId}`;
  const nsName = options.onNode?.name ?? `${prefix}n0`;
  const root = await Deno.makeTempDir({ prefix: `${prefix}-cni-` });
  const binDir = `${root}/bin`;
  const subnetFile = options.subnetFile ?? `${root}/run/flannel/subnet.env`;
  const dataDir = `${root}/var/lib/cni/skiff`;
  const ipamDataDir = `${root}/var/lib/cni/networks`;
  const confFile = `${root}/etc/cni/net.d/10-skiff.conflist`;
  const stateDir = `${root}/var/lib/skiff/pods`;
  const nsPath = options.onNode?.nsPath ?? `/run/netns/${nsName}`;
  const socket = `${root}/run/skiff/cni.sock`;
  const servers = new Set<() => Promise<void>>();
  const cleanup = async () => {
    for (const stop of servers) await stop();
    // on a lab node the lab owns the namespaces; only the Pods made here go
    await deleteNetnsWithPrefix(options.onNode ? `${prefix}${options.podPrefix ?? "p"}` : prefix);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  };
  try {
    if (!options.onNode) {
      await run(["ip", "netns", "add", nsName]);
      await run(["ip", "-n", nsName, "link", "set", "lo", "up"]);
    }
    await Deno.mkdir(`${root}/run/flannel`, { recursive: true });
    if (!options.subnetFile) {
      await Deno.writeTextFile(
        subnetFile,
        formatSubnetEnv({
          network: options.network ?? "10.244.0.0/16",
          subnet: options.subnet ?? "10.244.1.1/24",
          mtu: options.mtu ?? 1450,
          ipMasq: options.ipMasq ?? true,
        }),
      );
    }
    if (options.install ?? true) {
      // the same call the agent makes for a node
      await setupNodeCni({
        paths: { binDir, subnetFile, dataDir, ipamDataDir, confFile, podStateDir: stateDir },
        conflist: options.conflist,
      });
    } else {
      await linkReferencePlugins(binDir);
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  return {
    runId,
    prefix,
    nsName,
    nsPath,
    root,
    binDir,
    subnetFile,
    dataDir,
    ipamDataDir,
    confFile,
    stateDir,
    driver: { confFile, binDirs: [binDir], stateDir, hostNetns: nsPath },
    socket,
    async startServer() {
      await installPlugin(binDir, { socket });
      const child = new Deno.Command("nsenter", {
        args: [
          `--net=${nsPath}`,
          "--",
          `${PROJECT_ROOT}/node_modules/deno/deno`,
          "run",
          "-A",
          "--no-lock",
          "--no-config",
          `${PROJECT_ROOT}/cli/cni_server.ts`,
          socket,
        ],
        env: { DENO_DIR: `${PROJECT_ROOT}/build/deno_dir` },
        stdout: "null",
        stderr: "null",
      }).spawn();
      const stop = async () => {
        servers.delete(stop);
        try {
          child.kill("SIGTERM");
        } catch { /* exited */ }
        await child.status;
      };
      servers.add(stop);
      for (let i = 0; i < 200; i++) {
        try {
          if ((await Deno.stat(socket)).isSocket) return stop;
        } catch { /* not yet */ }
        await new Promise((r) => setTimeout(r, 25));
      }
      await stop();
      throw new Error(`CNI server did not create ${socket} in 5 s`);
    },
    async addNetns(suffix: string) {
      const name = `${prefix}${suffix}`;
      await run(["ip", "netns", "add", name]);
      return `/run/netns/${name}`;
    },
    async run(argv: string[]) {
      return (await run(argv, { netns: nsPath })).stdout;
    },
    async plugin(env: Record<string, string>, stdin: string, type = "skiff") {
      return await execPlugin(`${binDir}/${type}`, stdin, {
        command: env.CNI_COMMAND ?? "",
        containerId: env.CNI_CONTAINERID,
        netns: env.CNI_NETNS,
        ifName: env.CNI_IFNAME,
        args: env.CNI_ARGS,
        path: (env.CNI_PATH ?? "").split(":").filter((p) => p),
      }, { hostNetns: nsPath });
    },
    async snapshot() {
      const allocations: string[] = [];
      try {
        for await (const net of Deno.readDir(ipamDataDir)) {
          for await (const f of Deno.readDir(`${ipamDataDir}/${net.name}`)) {
            if (/^\d+\.\d+\.\d+\.\d+$/.test(f.name)) allocations.push(`${net.name}/${f.name}`);
          }
        }
      } catch { /* no allocations yet */ }
      const links = (await run(["ip", "-o", "link", "show"], { netns: nsPath })).stdout
        .split("\n").filter((l) => l).map((l) => l.split(":")[1].trim().split("@")[0]).sort();
      const natRules = (await run(["iptables-save", "-t", "nat"], { netns: nsPath })).stdout
        .split("\n").filter((l) =>
          l.startsWith("-A") &&
          // portmap's shared scaffolding stays once made (as on any node); per-Pod rules do not
          !/^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j CNI-HOSTPORT-(DNAT|MASQ)$/.test(l) &&
          !/^-A CNI-HOSTPORT-(MASQ|SETMARK) /.test(l)
        );
      return {
        delegates: await listDelegates(dataDir),
        allocations: allocations.sort(),
        links,
        natRules,
      };
    },
    [Symbol.asyncDispose]: cleanup,
  };
}
