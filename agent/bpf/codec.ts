/**
 * Binary codecs for BPF map keys and values: primitives with the byte order said per field
 * (`u32le` host order on x86-64/arm64, `be32` network order), IPv4 addresses, byte arrays,
 * explicit padding, and `struct()` which records each field's offset and size so a test can
 * compare them to the C struct's BTF. Structs never pad implicitly: a misaligned field is a
 * definition error, so the layout here is exactly the one written in bpf/include/skiff_abi.h.
 * @module
 */
import { formatIpv4, parseIpv4 } from "../net/ipv4.ts";

/** Byte order of a scalar: "le" = host order on every platform skiff runs on, "be" = network. */
export type ByteOrder = "le" | "be";

/** Reads and writes one T at an offset of a DataView. */
export interface Codec<T> {
  /** Bytes the value occupies. */
  readonly size: number;
  /** Alignment the C type has (1, 2, 4 or 8). */
  readonly align: number;
  /** Byte order of the scalar (or of an array's elements); undefined for bytes and structs. */
  readonly order?: ByteOrder;
  /** A short description, e.g. "be16", "u8[6]", "struct skiff_counter". */
  readonly kind: string;
  /** Writes `value` at `offset`; throws RangeError/TypeError for a value the type cannot hold. */
  encode(value: T, view: DataView, offset: number): void;
  /** Reads the value at `offset`. */
  decode(view: DataView, offset: number): T;
}

/** Explicit padding: written as zeros, left out of the decoded value. */
export interface PadCodec extends Codec<undefined> {
  /** Marks padding: left out of struct values. */
  readonly padding: true;
}

/** The value type a codec reads and writes. */
export type CodecValue<C> = C extends Codec<infer T> ? T : never;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // BPF programs write host-order fields; the `le` codecs are host order only on little endian.
  throw new Error("skiff's BPF codecs assume a little-endian host");
}

function uint(bits: 8 | 16 | 32, order: ByteOrder): Codec<number> {
  const size = bits / 8;
  const max = 2 ** bits - 1;
  const kind = bits === 8 ? "u8" : order === "be" ? `be${bits}` : `u${bits}le`;
  const le = order === "le";
  const check = (value: number) => {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new RangeError(`${value} is not a ${kind} (integer 0..${max})`);
    }
  };
  if (bits === 8) {
    return {
      size,
      align: 1,
      kind,
      encode: (v, view, o) => (check(v), view.setUint8(o, v)),
      decode: (view, o) => view.getUint8(o),
    };
  }
  if (bits === 16) {
    return {
      size,
      align: 2,
      order,
      kind,
      encode: (v, view, o) => (check(v), view.setUint16(o, v, le)),
      decode: (view, o) => view.getUint16(o, le),
    };
  }
  return {
    size,
    align: 4,
    order,
    kind,
    encode: (v, view, o) => (check(v), view.setUint32(o, v, le)),
    decode: (view, o) => view.getUint32(o, le),
  };
}

function u64big(order: ByteOrder): Codec<bigint> {
  const le = order === "le";
  const kind = le ? "u64le" : "be64";
  return {
    size: 8,
    align: 8,
    order,
    kind,
    encode(v, view, o) {
      if (typeof v !== "bigint" || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
        throw new RangeError(`${v} is not a ${kind} (bigint 0..2^64-1)`);
      }
      view.setBigUint64(o, v, le);
    },
    decode: (view, o) => view.getBigUint64(o, le),
  };
}

/** u8. */
export const u8: Codec<number> = uint(8, "le");
/** u16, host (little-endian) order: `__u16` in C. */
export const u16le: Codec<number> = uint(16, "le");
/** u32, host order: `__u32`. */
export const u32le: Codec<number> = uint(32, "le");
/** u64 as bigint, host order: `__u64`. */
export const u64le: Codec<bigint> = u64big("le");
/** u16, network (big-endian) order: `__be16`, e.g. a port. */
export const be16: Codec<number> = uint(16, "be");
/** u32, network order: `__be32`. */
export const be32: Codec<number> = uint(32, "be");
/** u64 as bigint, network order: `__be64`. */
export const be64: Codec<bigint> = u64big("be");

/** u64 host order as a JS number: decoding above 2^53 throws, so a counter never silently rounds. */
export const u64leNumber: Codec<number> = {
  size: 8,
  align: 8,
  order: "le",
  kind: "u64le",
  encode(v, view, o) {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`${v} is not a u64le number (safe integer 0..2^53-1)`);
    }
    view.setBigUint64(o, BigInt(v), true);
  },
  decode(view, o) {
    const lo = view.getUint32(o, true);
    const hi = view.getUint32(o + 4, true);
    if (hi > 0x1fffff) {
      throw new RangeError(`u64 ${view.getBigUint64(o, true)} exceeds 2^53; use u64le (bigint)`);
    }
    return hi * 0x1_0000_0000 + lo;
  },
};

/** An IPv4 address as a dotted string, stored in network order (`__be32`). */
export const ipv4: Codec<string> = {
  size: 4,
  align: 4,
  order: "be",
  kind: "ipv4",
  encode: (v, view, o) => view.setUint32(o, encodeIpv4(v), false),
  decode: (view, o) => formatIpv4(view.getUint32(o, false)),
};

function encodeIpv4(text: string): number {
  if (typeof text !== "string") throw new TypeError(`expected an IPv4 string, got ${typeof text}`);
  return parseIpv4(text); // a character loop (agent/net/ipv4.ts): cheap next to the syscall
}

/** A fixed array of `length` raw bytes (`__u8 x[length]`), e.g. a MAC address. */
export function bytes(length: number): Codec<Uint8Array> {
  positiveInt(length, "bytes() length");
  return {
    size: length,
    align: 1,
    kind: `u8[${length}]`,
    encode(v, view, o) {
      if (!(v instanceof Uint8Array) || v.length !== length) {
        throw new TypeError(`expected ${length} bytes, got ${describe(v)}`);
      }
      new Uint8Array(view.buffer, view.byteOffset + o, length).set(v);
    },
    decode: (view, o) =>
      new Uint8Array(view.buffer.slice(view.byteOffset + o, view.byteOffset + o + length)),
  };
}

/** `length` bytes of explicit padding (`__u8 pad[length]` in C): zeros out, nothing in. */
export function pad(length: number): PadCodec {
  positiveInt(length, "pad() length");
  return {
    size: length,
    align: 1,
    kind: `pad[${length}]`,
    padding: true,
    encode(_v, view, o) {
      for (let i = 0; i < length; i++) view.setUint8(o + i, 0);
    },
    decode: () => undefined,
  };
}

/** A fixed array of `length` elements (`T x[length]`). */
export function array<T>(element: Codec<T>, length: number): Codec<T[]> {
  positiveInt(length, "array() length");
  return {
    size: element.size * length,
    align: element.align,
    order: element.order,
    kind: `${element.kind}[${length}]`,
    encode(v, view, o) {
      if (!Array.isArray(v) || v.length !== length) {
        throw new TypeError(`expected an array of ${length}, got ${describe(v)}`);
      }
      for (let i = 0; i < length; i++) element.encode(v[i], view, o + i * element.size);
    },
    decode(view, o) {
      const out = new Array<T>(length);
      for (let i = 0; i < length; i++) out[i] = element.decode(view, o + i * element.size);
      return out;
    },
  };
}

/** Field codecs of a struct, in C declaration order. */
export type StructFields = Record<string, Codec<unknown> | Codec<number> | Codec<bigint>>;

/** The decoded value of a struct: its fields minus padding. */
export type StructValue<F> = {
  -readonly [K in keyof F as F[K] extends PadCodec ? never : K]: CodecValue<F[K]>;
};

/** Where a struct field lives, as BTF reports it. */
export interface FieldLayout {
  /** The TypeScript field name. */
  readonly name: string;
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  /** Bytes. */
  readonly size: number;
  /** Byte order, for scalars and arrays of them. */
  readonly order?: ByteOrder;
  /** True for pad() fields. */
  readonly padding: boolean;
}

/** A struct codec, with the layout it implies. */
export interface StructCodec<T> extends Codec<T> {
  /** The C struct name without "struct ", e.g. "skiff_counter". */
  readonly name: string;
  /** Every field, padding included, in order. */
  readonly fields: readonly FieldLayout[];
}

/**
 * A C struct: fields laid out in the given order with no implicit padding. Throws TypeError at
 * definition if a field is not naturally aligned or the size is not a multiple of the struct's
 * alignment: the C header must spell the padding out, and so must this.
 */
export function struct<const F extends StructFields>(
  name: string,
  fields: F,
): StructCodec<StructValue<F>> {
  const entries = Object.entries(fields) as [string, Codec<unknown>][];
  if (entries.length === 0) throw new TypeError(`struct ${name} has no fields`);
  const layout: FieldLayout[] = [];
  let offset = 0;
  let align = 1;
  for (const [field, codec] of entries) {
    if (offset % codec.align !== 0) {
      throw new TypeError(
        `struct ${name}: field "${field}" (${codec.kind}) at offset ${offset} is not ${codec.align}-byte aligned; add explicit padding before it`,
      );
    }
    layout.push({
      name: field,
      offset,
      size: codec.size,
      order: codec.order,
      padding: "padding" in codec,
    });
    offset += codec.size;
    align = Math.max(align, codec.align);
  }
  if (offset % align !== 0) {
    throw new TypeError(
      `struct ${name}: size ${offset} is not a multiple of its alignment ${align}; add ${
        align - offset % align
      } bytes of tail padding`,
    );
  }
  const codecs = entries.map(([, c]) => c);
  const names = entries.map(([n]) => n);
  const isPad = layout.map((f) => f.padding);
  const n = codecs.length;
  // The checked path: walks the fields and says which one is wrong.
  const encodeChecked = (value: unknown, view: DataView, base: number): void => {
    if (typeof value !== "object" || value === null) {
      throw new TypeError(`struct ${name}: expected an object, got ${describe(value)}`);
    }
    const record = value as Record<string, unknown>;
    for (let i = 0; i < n; i++) {
      const v = record[names[i]];
      if (v === undefined && !isPad[i]) {
        throw new TypeError(`struct ${name}: field "${names[i]}" is missing`);
      }
      try {
        codecs[i].encode(v, view, base + layout[i].offset);
      } catch (error) {
        const e = error as Error;
        const Ctor = e instanceof RangeError ? RangeError : TypeError;
        throw new Ctor(`${name}.${names[i]}: ${e.message}`, { cause: e });
      }
    }
  };
  const fast = compileStruct(names, isPad, layout.map((f) => f.offset), codecs, encodeChecked);
  return {
    name,
    size: offset,
    align,
    kind: `struct ${name}`,
    fields: layout,
    encode: fast.encode,
    decode: fast.decode as (view: DataView, offset: number) => StructValue<F>,
  };
}

/**
 * Straight-line encode/decode for one struct: a property load and a codec call per field, each
 * at its own site, so V8 keeps them monomorphic and inlines them. A generic loop over fields is
 * about 3x slower, which matters at batch rates (2M elements/s leaves 0.5 µs per element).
 * Names are emitted as JSON string literals and offsets as numbers: nothing else enters the
 * source. Any failure re-runs `checked`, which throws the error naming the field.
 */
function compileStruct(
  names: readonly string[],
  isPad: readonly boolean[],
  offsets: readonly number[],
  codecs: readonly Codec<unknown>[],
  checked: (value: unknown, view: DataView, base: number) => void,
): {
  encode(value: unknown, view: DataView, base: number): void;
  decode(view: DataView, base: number): unknown;
} {
  const params = codecs.map((_, i) => `c${i}`);
  const encodeLines = names.map((field, i) =>
    isPad[i]
      ? `c${i}.encode(undefined, view, base + ${offsets[i]});`
      : `const f${i} = v[${
        JSON.stringify(field)
      }]; if (f${i} === undefined) return checked(v, view, base); c${i}.encode(f${i}, view, base + ${
        offsets[i]
      });`
  );
  const decodeProps = names.flatMap((field, i) =>
    isPad[i] ? [] : [`${JSON.stringify(field)}: c${i}.decode(view, base + ${offsets[i]})`]
  );
  const source = `"use strict";
return {
  encode(v, view, base) {
    if (typeof v !== "object" || v === null) return checked(v, view, base);
    try {
      ${encodeLines.join("\n      ")}
    } catch (error) {
      checked(v, view, base);
      throw error;
    }
  },
  decode(view, base) {
    return { ${decodeProps.join(", ")} };
  },
};`;
  return new Function("checked", ...params, source)(checked, ...codecs);
}

/** Per-CPU map values: the kernel hands out one slot per possible CPU, each rounded up to 8. */
export function perCpu<T>(element: Codec<T>, cpus: number): Codec<T[]> {
  positiveInt(cpus, "perCpu() cpus");
  const stride = perCpuStride(element.size);
  return {
    size: stride * cpus,
    align: 8,
    order: element.order,
    kind: `percpu(${element.kind})x${cpus}`,
    encode(v, view, o) {
      if (!Array.isArray(v) || v.length !== cpus) {
        throw new TypeError(`expected one value per possible CPU (${cpus}), got ${describe(v)}`);
      }
      for (let i = 0; i < cpus; i++) {
        for (let b = element.size; b < stride; b++) view.setUint8(o + i * stride + b, 0);
        element.encode(v[i], view, o + i * stride);
      }
    },
    decode(view, o) {
      const out = new Array<T>(cpus);
      for (let i = 0; i < cpus; i++) out[i] = element.decode(view, o + i * stride);
      return out;
    },
  };
}

/** The bytes one CPU's slot takes in a per-CPU value: value_size rounded up to 8. */
export function perCpuStride(valueSize: number): number {
  return Math.ceil(valueSize / 8) * 8;
}

/** Encodes a value into a fresh buffer of exactly `codec.size` bytes. */
export function encode<T>(codec: Codec<T>, value: T): Uint8Array {
  const out = new Uint8Array(codec.size);
  codec.encode(value, new DataView(out.buffer), 0);
  return out;
}

/** Decodes a value from the start of `data`; throws if `data` is shorter than the codec. */
export function decode<T>(codec: Codec<T>, data: Uint8Array): T {
  if (data.byteLength < codec.size) {
    throw new RangeError(`${codec.kind} needs ${codec.size} bytes, got ${data.byteLength}`);
  }
  return codec.decode(new DataView(data.buffer, data.byteOffset, data.byteLength), 0);
}

function positiveInt(value: number, what: string): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${what} must be a positive integer, got ${value}`);
  }
}

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return value === null ? "null" : typeof value;
}
