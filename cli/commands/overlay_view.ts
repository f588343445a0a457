/**
 * What `skiff leases` and `skiff routes` share: opening the configured subnet store read-only
 * (no directory is created, no lease taken) and telling which lease is this node's — the one
 * whose public IP is an address of the node (flannel's identity rule), else subnet.env's.
 * @module
 */
import type { AgentConfig } from "../../agent/config.ts";
import { type AddrInfo, iprouteJson, type LinkInfo } from "../../agent/net/iproute.ts";
import { createEmbeddedStore } from "../../agent/overlay/embedded_store.ts";
import { createEtcdStore } from "../../agent/overlay/etcd_store.ts";
import { readSubnetEnv } from "../../agent/overlay/subnet_env.ts";
import type { Lease, SubnetStore } from "../../agent/overlay/subnet_store.ts";

/** Opens the store of `config` without creating anything; a missing embedded dir is an Error. */
export async function openNodeStore(config: AgentConfig): Promise<SubnetStore> {
  if (config.store.type === "etcd") {
    return createEtcdStore({ endpoints: config.store.endpoints, prefix: config.store.prefix });
  }
  const dir = config.store.dir;
  try {
    if (!(await Deno.stat(dir)).isDirectory) throw new Error(`${dir} is not a directory`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `embedded store ${dir} does not exist: no agent has run with this config (check --config, --state-dir or store.dir)`,
      );
    }
    throw error;
  }
  return await createEmbeddedStore({ dir });
}

/** A human name of the store, e.g. "embedded /var/lib/skiff/store". */
export function storeName(config: AgentConfig): string {
  return config.store.type === "etcd"
    ? `etcd ${config.store.endpoints.join(",")} ${config.store.prefix}`
    : `embedded ${config.store.dir}`;
}

/** IPv4 addresses of the node's netns ("" = the current one). */
export async function localAddresses(netns: string): Promise<string[]> {
  const links = await iprouteJson<LinkInfo>("ip", ["-4", "addr", "show"], netns);
  return links.flatMap((l) => (l.addr_info ?? []).map((a: AddrInfo) => a.local));
}

/** The lease of this node among `leases`, or undefined. */
export async function findOwnLease(
  config: AgentConfig,
  leases: readonly Lease[],
): Promise<{ lease: Lease | undefined; addresses: string[] }> {
  const addresses = await localAddresses(config.netns);
  const byIp = leases.find((l) => addresses.includes(l.attrs.publicIp));
  if (byIp) return { lease: byIp, addresses };
  const env = await readSubnetEnv(config.cni.subnetFile);
  return { lease: leases.find((l) => l.subnet === env?.subnet), addresses };
}
