/**
 * Opens the SubnetStore the agent config asks for (`store` section of agent/config.ts) and,
 * when the config carries a net-conf.json (`network`), stores it unless one is there already.
 * @module
 */
import type { Logger } from "../log.ts";
import { createEmbeddedStore } from "./embedded_store.ts";
import { createEtcdStore } from "./etcd_store.ts";
import type { SubnetStore } from "./subnet_store.ts";

/** The store part of the agent config. */
export type StoreChoice =
  | { readonly type: "embedded"; readonly dir: string }
  | { readonly type: "etcd"; readonly endpoints: readonly string[]; readonly prefix: string };

/** Options for {@linkcode openSubnetStore}. */
export interface OpenStoreOptions {
  /** net-conf.json to initialise an empty store with (a bad one is refused, nothing written). */
  readonly network?: unknown;
  readonly log?: Logger;
}

/** The store for `choice`, with its network config in place if `options.network` is given. */
export async function openSubnetStore(
  choice: StoreChoice,
  options: OpenStoreOptions = {},
): Promise<SubnetStore> {
  const store = choice.type === "embedded"
    ? await createEmbeddedStore({ dir: choice.dir, log: options.log })
    : createEtcdStore({ endpoints: choice.endpoints, prefix: choice.prefix, log: options.log });
  if (options.network !== undefined) await store.initNetworkConfig(options.network);
  return store;
}
