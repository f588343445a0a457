/**
 * A one-node CNI fixture for tests: a node netns "sk<id>n0", a temp root with subnet.env, a
 * bin dir (reference plugins + the skiff shim), the conflist, and state dirs; every netns
 * named sk<id>* and the temp root are removed on dispose.
 * @module
 */

import { run } from "../../agent/net/exec.ts";
import { writeConflist } from "../../agent/cni/conflist.ts";
import type { ConflistOptions } from "../../agent/cni/conflist.ts";
import { installPlugin, linkReferencePlugins } from "../../agent/cni/install.ts";
import type { PodDriverOptions } from "../../agent/cni/runtime.ts";
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
  const runId = crypto.randomUUID().replaceAll("-", "").slice(0, 5);
  const prefix = `sk${runId}`;
  const nsName = `${prefix}n0`;
  const root = await Deno.makeTempDir({ prefix: `${prefix}-cni-` });
  const binDir = `${root}/bin`;
  const subnetFile = `${root}/run/flannel/subnet.env`;
  const dataDir = `${root}/var/lib/cni/skiff`;
  const ipamDataDir = `${root}/var/lib/cni/networks`;
  const confFile = `${root}/etc/cni/net.d/10-skiff.conflist`;
  const stateDir = `${root}/var/lib/skiff/pods`;
  const nsPath = `/run/netns/${nsName}`;
  const cleanup = async () => {
    await deleteNetnsWithPrefix(prefix);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  };
  try {
    await run(["ip", "netns", "add", nsName]);
    await run(["ip", "-n", nsName, "link", "set", "lo", "up"]);
    await Deno.mkdir(`${root}/run/flannel`, { recursive: true });
    await Deno.writeTextFile(
      subnetFile,
      formatSubnetEnv({
        network: options.network ?? "10.244.0.0/16",
        subnet: options.subnet ?? "10.244.1.1/24",
        mtu: options.mtu ?? 1450,
        ipMasq: options.ipMasq ?? true,
      }),
    );
    await linkReferencePlugins(binDir);
    if (options.install ?? true) {
      await installPlugin(binDir);
      await writeConflist(confFile, { subnetFile, dataDir, ipamDataDir, ...options.conflist });
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
    async addNetns(suffix: string) {
      const name = `${prefix}${suffix}`;
      await run(["ip", "netns", "add", name]);
      return `/run/netns/${name}`;
    },
    async run(argv: string[]) {
      return (await run(argv, { netns: nsPath })).stdout;
    },
    [Symbol.asyncDispose]: cleanup,
  };
}
