/**
 * The ABI check: every struct codec in agent/bpf/abi.ts has the offsets, sizes and byte orders
 * clang gives the struct in bpf/include/skiff_abi.h (read from BTF), and every `struct skiff_*`
 * in the header has a codec. A fixture header proves the check reports what it should.
 */
import assert from "node:assert/strict";
import { ABI_STRUCTS } from "../agent/bpf/abi.ts";
import { compareLayout, readBtfStructs } from "../agent/bpf/btf_layout.ts";
import {
  be16,
  be32,
  ipv4,
  pad,
  struct,
  type StructCodec,
  u16le,
  u32le,
  u64le,
  u8,
} from "../agent/bpf/codec.ts";
import { run } from "../agent/net/exec.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CFLAGS = ["-g", "-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"];

/** Struct names a header defines with a body, after the preprocessor. */
async function headerStructs(header: string): Promise<string[]> {
  const out = await run(["clang-19", "-E", "-P", ...CFLAGS, "-x", "c", header]);
  return [...out.stdout.matchAll(/\bstruct\s+(skiff_\w+)\s*\{/g)].map((m) => m[1]);
}

/**
 * Compiles a file that includes `header` and defines one global of every registered struct
 * (so each lands in BTF), then compares each codec with its BTF layout. Returns the problems.
 */
async function checkAbi(
  header: string,
  registry: Readonly<Record<string, StructCodec<unknown>>>,
): Promise<string[]> {
  const problems: string[] = [];
  for (const [key, codec] of Object.entries(registry)) {
    if (key !== codec.name) {
      problems.push(`registry key "${key}" holds the codec of "${codec.name}"`);
    }
  }
  const declared = await headerStructs(header);
  for (const name of declared) {
    if (!(name in registry)) problems.push(`struct ${name} is in ${header} but has no codec`);
  }
  for (const name of Object.keys(registry)) {
    if (!declared.includes(name)) problems.push(`codec ${name} has no struct in ${header}`);
  }
  const registered = Object.keys(registry).filter((n) => declared.includes(n));
  const dir = await Deno.makeTempDir({ prefix: "skabi" });
  try {
    const source = [
      `#include "${header}"`,
      ...registered.map((n, i) => `struct ${n} skiff_abi_ref_${i} __attribute__((used));`),
    ].join("\n");
    await Deno.writeTextFile(`${dir}/abi_ref.c`, source + "\n");
    await run(["clang-19", ...CFLAGS, "-c", `${dir}/abi_ref.c`, "-o", `${dir}/abi_ref.o`]);
    const btf = await readBtfStructs(`${dir}/abi_ref.o`);
    for (const name of registered) {
      const codec = registry[name];
      problems.push(...compareLayout(codec, btf.get(codec.name)));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return problems;
}

Deno.test("every struct in skiff_abi.h has a codec in abi.ts with the same layout as in BTF", async () => {
  const header = `${ROOT}bpf/include/skiff_abi.h`;
  assert.ok((await headerStructs(header)).length > 0, "found no struct skiff_* in the header");
  assert.deepEqual(await checkAbi(header, ABI_STRUCTS), []);
});

const FxFrontend = struct("skiff_fx_frontend", {
  vip: ipv4,
  port: be16,
  proto: u8,
  _pad0: pad(1),
  packets: u64le,
});
// Wrong on purpose: no pad0, and slot as 32 bits.
const FxSlotWrong = struct("skiff_fx_slot", { id: u32le, slot: u32le });
// Wrong on purpose: host order for a __be16.
const FxPortWrong = struct("skiff_fx_port", { port: u16le, _pad0: pad(2) });

Deno.test("the ABI check reports each field that differs from the C header, and orphan structs", async () => {
  const header = `${ROOT}tests/fixtures/abi_fixture.h`;
  const problems = await checkAbi(header, {
    skiff_fx_frontend: FxFrontend,
    skiff_fx_slot: FxSlotWrong,
    skiff_fx_port: FxPortWrong,
  });
  assert.deepEqual(problems, [
    `struct skiff_fx_orphan is in ${header} but has no codec`,
    "struct skiff_fx_slot: 3 members in C (id, slot, pad0), 2 fields in TypeScript (id, slot)",
    "struct skiff_fx_slot.slot: size is 2 in C, 4 in TypeScript",
    "struct skiff_fx_port.port: C stores it in network order (__be), the codec in host order",
  ]);
});

Deno.test("the ABI check passes a fixture whose codecs all match", async () => {
  const header = `${ROOT}tests/fixtures/abi_fixture.h`;
  const problems = await checkAbi(header, {
    skiff_fx_frontend: FxFrontend,
    skiff_fx_slot: struct("skiff_fx_slot", { id: u32le, slot: u16le, _pad0: pad(2) }),
    skiff_fx_port: struct("skiff_fx_port", { port: be16, _pad0: pad(2) }),
    skiff_fx_orphan: struct("skiff_fx_orphan", { x: u32le }),
  });
  assert.deepEqual(problems, []);
});

Deno.test("the ABI check reports a codec whose struct is not in the header, and a misfiled key", async () => {
  const header = `${ROOT}tests/fixtures/abi_fixture.h`;
  const problems = await checkAbi(header, {
    skiff_fx_frontend: FxFrontend,
    skiff_fx_slot: struct("skiff_fx_port", { port: be16, _pad0: pad(2) }),
    skiff_fx_port: struct("skiff_fx_port", { port: be16, _pad0: pad(2) }),
    skiff_fx_orphan: struct("skiff_fx_orphan", { x: be32 }),
    skiff_fx_gone: struct("skiff_fx_gone", { x: u32le }),
  });
  assert.deepEqual(problems, [
    'registry key "skiff_fx_slot" holds the codec of "skiff_fx_port"',
    `codec skiff_fx_gone has no struct in ${header}`,
    "struct skiff_fx_orphan.x: C stores it in host order, the codec in network order (__be)",
  ]);
});
