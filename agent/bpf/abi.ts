/**
 * Codecs for every struct in bpf/include/skiff_abi.h, and ABI_STRUCTS, the registry that
 * tests/abi_layout_test.ts checks against the compiled BTF (offset, size, byte order of each
 * field) and against the header (every `struct skiff_*` there must have a codec here).
 *
 * Adding a struct: write it in skiff_abi.h with explicit padding and __be for network-order
 * fields, mirror it below with `struct("skiff_x", {...})` (same field order; camelCase names
 * are fine; `pad(n)` for padding; be16/be32/ipv4 for __be fields, u16le/u32le/u64le for host
 * order), and add ONE line to ABI_STRUCTS. Run `deno test -A tests/abi_layout_test.ts`.
 * @module
 */
import {
  be16,
  type Codec,
  ipv4,
  pad,
  struct,
  type StructCodec,
  u16le,
  u32le,
  u64le,
  u64leNumber,
  u8,
} from "./codec.ts";

// ---- traffic counter (counter.c) ----

/** struct skiff_counter_value: counter_totals (per CPU) and counter_by_source values. */
export const CounterValue: StructCodec<{ packets: bigint; bytes: bigint }> = struct(
  "skiff_counter_value",
  {
    packets: u64le,
    bytes: u64le,
  },
);

/** struct skiff_counter_key: counter_by_source key, one IPv4 source and L4 protocol. */
export const CounterKey: StructCodec<{ saddr: string; proto: number }> = struct(
  "skiff_counter_key",
  {
    saddr: ipv4,
    proto: u8,
    _pad: pad(3),
  },
);

// ---- service load balancing (sock_lb.c, tc_lb.c) ----

/** SKIFF_MAGLEV_M of the default build: the Maglev table size (prime). */
export const MAGLEV_M = 16381;

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

/** struct skiff_lb_svc_key. */
export const LbSvcKey = struct("skiff_lb_svc_key", {
  vip: ipv4,
  dport: be16,
  proto: u8,
  pad0: pad(1),
  slot: u16le,
  pad1: pad(2),
});

/** struct skiff_lb_svc. */
export const LbSvc = struct("skiff_lb_svc", {
  backend_id: u32le,
  rev_nat_id: u32le,
  affinity_timeout: u32le,
  count: u16le,
  flags: u16le,
});

/** struct skiff_lb_backend. */
export const LbBackend = struct("skiff_lb_backend", {
  addr: ipv4,
  port: be16,
  proto: u8,
  flags: u8,
});

/** struct skiff_lb_rev_nat. */
export const LbRevNat = struct("skiff_lb_rev_nat", {
  vip: ipv4,
  port: be16,
  proto: u8,
  pad: pad(1),
});

/** struct skiff_lb_maglev. */
export const LbMaglev = struct("skiff_lb_maglev", {
  backend_id: u32Table(MAGLEV_M),
});

/** struct skiff_lb_ct_key. */
export const LbCtKey = struct("skiff_lb_ct_key", {
  saddr: ipv4,
  daddr: ipv4,
  sport: be16,
  dport: be16,
  proto: u8,
  dir: u8,
  pad: pad(2),
});

/** struct skiff_lb_ct. */
export const LbCt = struct("skiff_lb_ct", {
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

/** struct skiff_lb_affinity_key. */
export const LbAffinityKey = struct("skiff_lb_affinity_key", {
  client_id: u64le,
  rev_nat_id: u32le,
  kind: u8,
  pad: pad(3),
});

/** struct skiff_lb_affinity. */
export const LbAffinity = struct("skiff_lb_affinity", {
  last_used: u64le,
  backend_id: u32le,
  pad: pad(4),
});

/** struct skiff_lb_sock_rev_key. */
export const LbSockRevKey = struct("skiff_lb_sock_rev_key", {
  cookie: u64le,
  addr: ipv4,
  port: be16,
  pad: pad(2),
});

/** struct skiff_lb_sock_rev. */
export const LbSockRev = struct("skiff_lb_sock_rev", {
  vip: ipv4,
  port: be16,
  pad: pad(2),
  rev_nat_id: u32le,
});

/** struct skiff_lb_stats. */
export const LbStats = struct("skiff_lb_stats", {
  new_flows: u64leNumber,
  packets: u64leNumber,
  bytes: u64leNumber,
  no_backend: u64leNumber,
});

/** struct skiff_lb_config. */
export const LbConfig = struct("skiff_lb_config", {
  snat_addr: ipv4,
  flags: u32le,
});

/** C struct name → codec, for every struct in skiff_abi.h. One line per struct. */
export const ABI_STRUCTS: Readonly<Record<string, StructCodec<unknown>>> = {
  skiff_counter_value: CounterValue,
  skiff_counter_key: CounterKey,
  skiff_lb_svc_key: LbSvcKey,
  skiff_lb_svc: LbSvc,
  skiff_lb_backend: LbBackend,
  skiff_lb_rev_nat: LbRevNat,
  skiff_lb_maglev: LbMaglev,
  skiff_lb_ct_key: LbCtKey,
  skiff_lb_ct: LbCt,
  skiff_lb_affinity_key: LbAffinityKey,
  skiff_lb_affinity: LbAffinity,
  skiff_lb_sock_rev_key: LbSockRevKey,
  skiff_lb_sock_rev: LbSockRev,
  skiff_lb_stats: LbStats,
  skiff_lb_config: LbConfig,
};
