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
import { ipv4, pad, struct, type StructCodec, u64le, u8 } from "./codec.ts";

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

/** C struct name → codec, for every struct in skiff_abi.h. One line per struct. */
export const ABI_STRUCTS: Readonly<Record<string, StructCodec<unknown>>> = {
  skiff_counter_value: CounterValue,
  skiff_counter_key: CounterKey,
};
