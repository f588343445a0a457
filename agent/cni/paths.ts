/**
 * Where a node's CNI pieces live, under a root ("" on a real node; a per-node directory when
 * several lab nodes share one filesystem). The agent, the plugin config and `skiff pod` agree
 * on these paths.
 * @module
 */

/** The CNI paths of one node. */
export interface NodeCniPaths {
  /** The conflist the runtime loads: <root>/etc/cni/net.d/10-skiff.conflist. */
  readonly confFile: string;
  /** The CNI bin dir: <root>/opt/cni/bin. */
  readonly binDir: string;
  /** flannel's subnet.env: <root>/run/flannel/subnet.env. */
  readonly subnetFile: string;
  /** The plugin's saved delegates: <root>/var/lib/cni/skiff. */
  readonly dataDir: string;
  /** host-local's allocations: <root>/var/lib/cni/networks. */
  readonly ipamDataDir: string;
  /** `skiff pod` records: <root>/var/lib/skiff/pods. */
  readonly podStateDir: string;
}

/** The CNI paths under `root` ("" for the real node layout). */
export function nodeCniPaths(root = ""): NodeCniPaths {
  const r = root.replace(/\/$/, "");
  return {
    confFile: `${r}/etc/cni/net.d/10-skiff.conflist`,
    binDir: `${r}/opt/cni/bin`,
    subnetFile: `${r}/run/flannel/subnet.env`,
    dataDir: `${r}/var/lib/cni/skiff`,
    ipamDataDir: `${r}/var/lib/cni/networks`,
    podStateDir: `${r}/var/lib/skiff/pods`,
  };
}

/** The root `skiff pod --node N` uses when no --root is given: /run/skiff/nodes/N. */
export function labNodeRoot(node: string): string {
  return `/run/skiff/nodes/${node}`;
}
