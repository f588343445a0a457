/**
 * Struct layouts as C compiled them, read from an object's BTF (`bpftool btf dump file X
 * format raw -j`), and the comparison with a TypeScript struct codec: the mechanical check that
 * keeps agent/bpf/abi.ts and bpf/include/skiff_abi.h in step.
 * @module
 */
import { run } from "../net/exec.ts";
import type { ByteOrder, StructCodec } from "./codec.ts";

/** One member of a C struct, as BTF records it. */
export interface BtfMember {
  /** "(anon)" for an anonymous struct/union member. */
  readonly name: string;
  /** Byte offset (bit offset / 8; see `bitfieldBits`). */
  readonly offset: number;
  /** Bytes of the member's type (for a bitfield, of its underlying integer). */
  readonly size: number;
  /** "be" when the type goes through a __be16/__be32/__be64 typedef, "le" for other ints. */
  readonly order?: ByteOrder;
  /** Set for a bitfield: its width in bits. Codecs cannot express these. */
  readonly bitfieldBits?: number;
}

/** A C struct's layout. */
export interface BtfStruct {
  /** The struct tag without "struct ". */
  readonly name: string;
  /** sizeof() in bytes. */
  readonly size: number;
  /** In declaration order. */
  readonly members: readonly BtfMember[];
}

/** One entry of bpftool's raw JSON BTF dump (the fields skiff reads). */
export interface RawType {
  /** Type id, what `type_id` fields refer to. */
  id: number;
  /** "STRUCT", "TYPEDEF", "INT", "ARRAY"… */
  kind: string;
  /** "(anon)" when unnamed. */
  name: string;
  /** Bytes, for sized kinds. */
  size?: number;
  /** The referred type, for typedefs, modifiers, pointers and array elements. */
  type_id?: number;
  /** Element count, for arrays. */
  nr_elems?: number;
  /** Struct/union members. */
  members?: { name: string; type_id: number; bits_offset: number; bitfield_size?: number }[];
}

/** Reads every named struct in `objectPath`'s BTF; throws CommandError when bpftool cannot. */
export async function readBtfStructs(objectPath: string): Promise<Map<string, BtfStruct>> {
  const out = await run(["bpftool", "btf", "dump", "file", objectPath, "format", "raw", "-j"]);
  return parseBtfStructs(JSON.parse(out.stdout));
}

/** The named structs of a `bpftool btf dump … format raw -j` document, by name. */
export function parseBtfStructs(dump: { types: RawType[] }): Map<string, BtfStruct> {
  if (!dump || !Array.isArray(dump.types)) {
    throw new TypeError("not a bpftool raw BTF dump: no `types` array");
  }
  const byId = new Map<number, RawType>(dump.types.map((t) => [t.id, t]));
  const structs = new Map<string, BtfStruct>();
  for (const t of dump.types) {
    if (t.kind !== "STRUCT" || !t.name || t.name === "(anon)") continue;
    structs.set(t.name, {
      name: t.name,
      size: t.size ?? 0,
      members: (t.members ?? []).map((m) => ({
        name: m.name,
        offset: m.bits_offset / 8,
        size: sizeOf(byId, m.type_id),
        order: orderOf(byId, m.type_id),
        ...(m.bitfield_size ? { bitfieldBits: m.bitfield_size } : {}),
      })),
    });
  }
  return structs;
}

function resolve(byId: Map<number, RawType>, id: number): RawType[] {
  const chain: RawType[] = [];
  let t = byId.get(id);
  while (t && ["TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"].includes(t.kind)) {
    chain.push(t);
    t = t.type_id === undefined ? undefined : byId.get(t.type_id);
  }
  if (t) chain.push(t);
  return chain;
}

function sizeOf(byId: Map<number, RawType>, id: number): number {
  const chain = resolve(byId, id);
  const t = chain[chain.length - 1];
  if (!t) return 0;
  if (t.kind === "ARRAY") return (t.nr_elems ?? 0) * sizeOf(byId, t.type_id ?? 0);
  if (t.kind === "PTR") return 8;
  return t.size ?? 0;
}

function orderOf(byId: Map<number, RawType>, id: number): ByteOrder | undefined {
  const chain = resolve(byId, id);
  if (chain.some((t) => /^__be(16|32|64)$/.test(t.name))) return "be";
  const t = chain[chain.length - 1];
  if (!t) return undefined;
  if (t.kind === "ARRAY") return orderOf(byId, t.type_id ?? 0);
  if ((t.kind === "INT" || t.kind === "ENUM" || t.kind === "ENUM64") && (t.size ?? 0) > 1) {
    return "le";
  }
  return undefined;
}

// C snake_case and TS camelCase name the same field: compare without case and underscores.
function normalized(name: string): string {
  return name.replaceAll("_", "").toLowerCase();
}

/**
 * Every difference between a struct codec and the C layout: size, member count, each member's
 * name, offset, size and byte order (padding members are compared by position only). Empty
 * when they agree.
 */
export function compareLayout(codec: StructCodec<unknown>, c: BtfStruct | undefined): string[] {
  const at = `struct ${codec.name}`;
  if (!c) return [`${at}: not found in the object's BTF`];
  const problems: string[] = [];
  if (codec.size !== c.size) {
    problems.push(`${at}: size is ${c.size} in C, ${codec.size} in TypeScript`);
  }
  if (codec.fields.length !== c.members.length) {
    problems.push(
      `${at}: ${c.members.length} members in C (${c.members.map((m) => m.name).join(", ")}), ` +
        `${codec.fields.length} fields in TypeScript (${
          codec.fields.map((f) => f.name).join(", ")
        })`,
    );
  }
  const n = Math.min(codec.fields.length, c.members.length);
  for (let i = 0; i < n; i++) {
    const ts = codec.fields[i];
    const cm = c.members[i];
    const where = `${at}.${cm.name}`;
    if (cm.bitfieldBits !== undefined) {
      problems.push(`${where}: is a ${cm.bitfieldBits}-bit bitfield; codecs need whole bytes`);
      continue;
    }
    if (!ts.padding && normalized(ts.name) !== normalized(cm.name)) {
      problems.push(`${where}: TypeScript field #${i} is named "${ts.name}"`);
    }
    if (ts.offset !== cm.offset) {
      problems.push(`${where}: offset is ${cm.offset} in C, ${ts.offset} in TypeScript`);
    }
    if (ts.size !== cm.size) {
      problems.push(`${where}: size is ${cm.size} in C, ${ts.size} in TypeScript`);
    }
    if (!ts.padding && cm.order && ts.order && cm.order !== ts.order) {
      const name = (o: ByteOrder) => (o === "be" ? "network order (__be)" : "host order");
      problems.push(`${where}: C stores it in ${name(cm.order)}, the codec in ${name(ts.order)}`);
    }
  }
  return problems;
}
