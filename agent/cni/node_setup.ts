/**
 * One call for the agent (or a lab/demo node) to make a node ready for CNI: the skiff shim and
 * the reference plugins in the bin dir, the conflist pointing at the node's subnet.env and
 * data dirs. Idempotent: a restart rewrites the same files atomically.
 * @module
 */

import { type Conflist, type ConflistOptions, writeConflist } from "./conflist.ts";
import { installPlugin, linkReferencePlugins } from "./install.ts";
import { type NodeCniPaths, nodeCniPaths } from "./paths.ts";

/** Options of {@linkcode setupNodeCni}. */
export interface NodeCniSetup {
  /** Root of the node's paths ("" = the real layout, /etc/cni/net.d…). Default "". */
  readonly root?: string;
  /** Individual paths overriding the root's (e.g. the agent config's binDir/subnetFile). */
  readonly paths?: Partial<NodeCniPaths>;
  /** Conflist options (name, cniVersion, bridge, delegate…); paths are filled from `paths`. */
  readonly conflist?: ConflistOptions;
  /** The agent's CNI socket baked into the shim (see serveCni). Default: none. */
  readonly socket?: string;
  /**
   * Directory with bridge, host-local, portmap, loopback to link into the bin dir, or null to
   * leave the bin dir's own. Default /usr/lib/cni (Debian's containernetworking-plugins).
   */
  readonly referencePlugins?: string | null;
}

/** What {@linkcode setupNodeCni} made. */
export interface NodeCni {
  readonly paths: NodeCniPaths;
  readonly conflist: Conflist;
  /** The installed shim. */
  readonly plugin: string;
}

/** Installs the plugin (and reference plugins) and writes the conflist for one node. */
export async function setupNodeCni(options: NodeCniSetup = {}): Promise<NodeCni> {
  const paths: NodeCniPaths = { ...nodeCniPaths(options.root ?? ""), ...options.paths };
  const reference = options.referencePlugins === undefined
    ? "/usr/lib/cni"
    : options.referencePlugins;
  if (reference !== null) {
    await linkReferencePlugins(
      paths.binDir,
      ["bridge", "host-local", "portmap", "loopback"],
      reference,
    );
  }
  const plugin = await installPlugin(paths.binDir, { socket: options.socket });
  const conflist = await writeConflist(paths.confFile, {
    subnetFile: paths.subnetFile,
    dataDir: paths.dataDir,
    ipamDataDir: paths.ipamDataDir,
    ...options.conflist,
  });
  return { paths, conflist, plugin };
}
