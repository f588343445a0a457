/**
 * Codecs of the service load-balancing structs and maps in bpf/include/skiff_abi.h and
 * lb_maps.h, field by field; a BTF test compares their layout to the compiled objects.
 * @module
 */
import {
  be16,
  type Codec,
  type CodecValue,
  ipv4,
  pad,
  struct,
  u16le,
  u32le,
  u64le,
  u64leNumber,
  u8,
} from "../bpf/codec.ts";

/** SKIFF_MAGLEV_M of the default build: the Maglev table size (prime). */
export const MAGLEV_M = 16381;

/** IPPROTO numbers. */
export const IPPROTO = { TCP: 6, UDP: 17 } as const;

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

export const svcKey = struct("skiff_lb_svc_key", {
  vip: ipv4,
  dport: be16,
  proto: u8,
  pad0: pad(1),
  slot: u16le,
  pad1: pad(2),
});
export type SvcKey = CodecValue<typeof svcKey>;

export const svcValue = struct("skiff_lb_svc", {
  backend_id: u32le,
  rev_nat_id: u32le,
  affinity_timeout: u32le,
  count: u16le,
  flags: u16le,
});
export type SvcValue = CodecValue<typeof svcValue>;

export const backendValue = struct("skiff_lb_backend", {
  addr: ipv4,
  port: be16,
  proto: u8,
  flags: u8,
});
export type BackendValue = CodecValue<typeof backendValue>;

export const revNatValue = struct("skiff_lb_rev_nat", {
  vip: ipv4,
  port: be16,
  proto: u8,
  pad: pad(1),
});
export type RevNatValue = CodecValue<typeof revNatValue>;

/**
 * `__u32 x[length]` as a Uint32Array, copied in one go (a 16381-entry table through a
 * per-element codec would cost more than the map write).
 */
export function u32Table(length: number): Codec<Uint32Array> {
  return {
    size: length * 4,
    align: 4,
    order: "le",
    kind: `u32le[${length}]`,
    encode(v, view, o) {
      if (!(v instanceof Uint32Array) || v.length !== length) {
        throw new TypeError(`expected a Uint32Array of ${length}, got ${String(v?.length)}`);
      }
      new Uint8Array(view.buffer, view.byteOffset + o, length * 4).set(
        new Uint8Array(v.buffer, v.byteOffset, length * 4),
      );
    },
    decode: (view, o) =>
      new Uint32Array(view.buffer.slice(view.byteOffset + o, view.byteOffset + o + length * 4)),
  };
}

export const maglevValue = struct("skiff_lb_maglev", {
  backend_id: u32Table(MAGLEV_M),
});
export type MaglevValue = CodecValue<typeof maglevValue>;

export const ctKey = struct("skiff_lb_ct_key", {
  saddr: ipv4,
  daddr: ipv4,
  sport: be16,
  dport: be16,
  proto: u8,
  dir: u8,
  pad: pad(2),
});
export type CtKey = CodecValue<typeof ctKey>;

export const ctValue = struct("skiff_lb_ct", {
  nat_saddr: ipv4,
  nat_daddr: ipv4,
  nat_sport: be16,
  nat_dport: be16,
  backend_id: u32le,
  rev_nat_id: u32le,
  state: u8,
  flags: u8,
  pad: pad(2),
  last_seen: u64le,
});
export type CtValue = CodecValue<typeof ctValue>;

export const affinityKey = struct("skiff_lb_affinity_key", {
  client_id: u64le,
  rev_nat_id: u32le,
  kind: u8,
  pad: pad(3),
});
export type AffinityKey = CodecValue<typeof affinityKey>;

export const affinityValue = struct("skiff_lb_affinity", {
  last_used: u64le,
  backend_id: u32le,
  pad: pad(4),
});
export type AffinityValue = CodecValue<typeof affinityValue>;

export const sockRevKey = struct("skiff_lb_sock_rev_key", {
  cookie: u64le,
  addr: ipv4,
  port: be16,
  pad: pad(2),
});
export type SockRevKey = CodecValue<typeof sockRevKey>;

export const sockRevValue = struct("skiff_lb_sock_rev", {
  vip: ipv4,
  port: be16,
  pad: pad(2),
  rev_nat_id: u32le,
});
export type SockRevValue = CodecValue<typeof sockRevValue>;

export const statsValue = struct("skiff_lb_stats", {
  new_flows: u64leNumber,
  packets: u64leNumber,
  bytes: u64leNumber,
  no_backend: u64leNumber,
});
export type StatsValue = CodecValue<typeof statsValue>;

export const configValue = struct("skiff_lb_config", {
  snat_addr: ipv4,
  flags: u32le,
});
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
