/**
 * The flannel-style VXLAN overlay: subnet leases in a store (embedded files or etcd v3 in
 * flannel's layout) and, per node, flannel.<VNI>, cni0, subnet.env and the peers' neighbour /
 * FDB / route entries. Start it with `startOverlay({ store, netns, nodeName, … })`.
 * @module
 */
export { createEmbeddedStore, type EmbeddedStoreOptions } from "./embedded_store.ts";
export { createEtcdStore, DEFAULT_ETCD_PREFIX, type EtcdStoreOptions } from "./etcd_store.ts";
export {
  type NetConfig,
  NetConfigError,
  netConfigToJson,
  parseNetConfig,
  type VxlanBackend,
} from "./net_config.ts";
export { type OpenStoreOptions, openSubnetStore, type StoreChoice } from "./open_store.ts";
export { type OverlayHandle, type OverlayOptions, startOverlay } from "./overlay.ts";
export type { PeerSyncReport } from "./peer_apply.ts";
export { parseSubnetEnv, readSubnetEnv, type SubnetEnv, writeSubnetEnv } from "./subnet_env.ts";
export {
  DEFAULT_LEASE_TTL_MS,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  LeaseLostError,
  LeaseRecordError,
  type LeaseSnapshot,
  type LeaseWatchResult,
  StoreError,
  type SubnetStore,
} from "./subnet_store.ts";
export { type Uplink, UplinkError, type UplinkSelector } from "./uplink.ts";
