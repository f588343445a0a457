/**
 * The LB's side of the ABI: constants of bpf/include/skiff_abi.h (flags, states), short names
 * for its struct codecs (defined and BTF-checked in agent/bpf/abi.ts) and their value types.
 * @module
 */
import { type CodecValue, struct, u32le } from "../bpf/codec.ts";
import { parseIpv4 } from "../net/ipv4.ts";
import {
  LbAffinity,
  LbAffinityKey,
  LbBackend,
  LbConfig,
  LbCt,
  LbCtKey,
  LbMaglev,
  LbRevNat,
  LbSockRev,
  LbSockRevKey,
  LbStats,
  LbSvc,
  LbSvcKey,
  MAGLEV_M,
  u32Table,
} from "../bpf/abi.ts";

export { MAGLEV_M };

/** IPPROTO numbers. */
export const IPPROTO = { TCP: 6, UDP: 17 } as const;

/** "TCP" / "UDP" for an IPPROTO number, else the number. */
export function protoName(proto: number): string {
  return proto === IPPROTO.TCP ? "TCP" : proto === IPPROTO.UDP ? "UDP" : String(proto);
}

/** lb_services value flags (SKIFF_SVC_*). */
export const SvcFlag = {
  AFFINITY: 0x0001,
  LOCAL: 0x0002,
  CLUSTERIP: 0x0004,
  EXTERNAL: 0x0008,
  NODEPORT: 0x0010,
} as const;

/** lb_backends flags (SKIFF_BE_*). */
export const BackendFlag = { TERMINATING: 0x01, LOCAL: 0x02 } as const;

/** lb_ct directions, states and flags. */
export const Ct = {
  FWD: 0,
  REV: 1,
  SYN_SENT: 1,
  OPEN: 2,
  CLOSING: 3,
  CLOSED: 4,
  F_SNAT: 0x01,
} as const;

/** Affinity client kinds (SKIFF_AFF_*). */
export const AffinityKind = { IP: 0, NETNS: 1 } as const;

/**
 * The affinity `client_id` of an IPv4 client (SKIFF_AFF_IP): the datapath stores the __be32
 * address in the low 32 bits of a host-order u64, i.e. its bytes in network order first.
 */
export function ipClientId(ip: string): bigint {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, parseIpv4(ip), false);
  return new DataView(bytes.buffer).getBigUint64(0, true);
}

export const svcKey = LbSvcKey;
export type SvcKey = CodecValue<typeof svcKey>;

export const svcValue = LbSvc;
export type SvcValue = CodecValue<typeof svcValue>;

export const backendValue = LbBackend;
export type BackendValue = CodecValue<typeof backendValue>;

export const revNatValue = LbRevNat;
export type RevNatValue = CodecValue<typeof revNatValue>;

export const maglevValue = LbMaglev;

/**
 * The lb_maglev value codec of a build with another SKIFF_MAGLEV_M (a prime): the table
 * size of the loaded objects is read off the map's value size at install.
 */
export function maglevCodec(size: number): typeof LbMaglev {
  if (size === MAGLEV_M) return LbMaglev;
  return struct("skiff_lb_maglev", { backend_id: u32Table(size) });
}
export type MaglevValue = CodecValue<typeof maglevValue>;

export const ctKey = LbCtKey;
export type CtKey = CodecValue<typeof ctKey>;

export const ctValue = LbCt;
export type CtValue = CodecValue<typeof ctValue>;

export const affinityKey = LbAffinityKey;
export type AffinityKey = CodecValue<typeof affinityKey>;

export const affinityValue = LbAffinity;
export type AffinityValue = CodecValue<typeof affinityValue>;

export const sockRevKey = LbSockRevKey;
export type SockRevKey = CodecValue<typeof sockRevKey>;

export const sockRevValue = LbSockRev;
export type SockRevValue = CodecValue<typeof sockRevValue>;

export const statsValue = LbStats;
export type StatsValue = CodecValue<typeof statsValue>;

export const configValue = LbConfig;
export type ConfigValue = CodecValue<typeof configValue>;

/** The u32 id keys of lb_backends, lb_rev_nat, lb_maglev, lb_stats, lb_config. */
export const idKey = u32le;

/** Every LB struct codec, for the BTF layout test. */
export const LB_STRUCTS = [
  svcKey,
  svcValue,
  backendValue,
  revNatValue,
  maglevValue,
  ctKey,
  ctValue,
  affinityKey,
  affinityValue,
  sockRevKey,
  sockRevValue,
  statsValue,
  configValue,
] as const;

/** The pinned map names of the LB (lb_maps.h). */
export const LB_MAP_NAMES = [
  "lb_services",
  "lb_backends",
  "lb_rev_nat",
  "lb_maglev",
  "lb_ct",
  "lb_affinity",
  "lb_sock_rev",
  "lb_stats",
  "lb_config",
] as const;
