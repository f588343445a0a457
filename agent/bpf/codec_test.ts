/** Codec unit tests: byte order per field, struct layout records, definition-time checks. */
import assert from "node:assert/strict";
import {
  array,
  be16,
  be32,
  be64,
  bytes,
  decode,
  encode,
  ipv4,
  pad,
  perCpu,
  struct,
  u16le,
  u32le,
  u64le,
  u64leNumber,
  u8,
} from "./codec.ts";
import { BpfError, errnoName } from "./errno.ts";

Deno.test("scalars write the byte order their name says", () => {
  assert.deepEqual([...encode(be16, 0x1234)], [0x12, 0x34]);
  assert.deepEqual([...encode(u16le, 0x1234)], [0x34, 0x12]);
  assert.deepEqual([...encode(be32, 0x0a000001)], [10, 0, 0, 1]);
  assert.deepEqual([...encode(u32le, 0x0a000001)], [1, 0, 0, 10]);
  assert.deepEqual([...encode(be64, 1n)], [0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...encode(u64le, 1n)], [1, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...encode(ipv4, "192.168.100.11")], [192, 168, 100, 11]);
  assert.equal(decode(ipv4, new Uint8Array([10, 96, 0, 1])), "10.96.0.1");
  assert.equal(decode(u64leNumber, encode(u64le, 2n ** 53n - 1n)), 2 ** 53 - 1);
});

Deno.test("scalars refuse values their C type cannot hold", () => {
  assert.throws(() => encode(u8, 256), {
    name: "RangeError",
    message: "256 is not a u8 (integer 0..255)",
  });
  assert.throws(() => encode(be16, -1), { name: "RangeError" });
  assert.throws(() => encode(u32le, 1.5), { name: "RangeError" });
  assert.throws(() => encode(u64le, -1n), { name: "RangeError" });
  assert.throws(() => encode(ipv4, "10.0.0.01"), { message: '"10.0.0.01" is not an IPv4 address' });
  assert.throws(() => encode(ipv4, "10.0.0"), { name: "TypeError" });
  assert.throws(() => decode(u64leNumber, encode(u64le, 2n ** 53n)), { name: "RangeError" });
  assert.throws(() => encode(bytes(6), new Uint8Array(5)), {
    message: "expected 6 bytes, got 5 bytes",
  });
});

Deno.test("struct() records each field's offset and size, padding included", () => {
  const svc = struct("skiff_lb_svc_key", {
    vip: ipv4,
    dport: be16,
    proto: u8,
    _pad0: pad(1),
    slot: u16le,
    _pad1: pad(2),
  });
  assert.equal(svc.size, 12);
  assert.equal(svc.align, 4);
  assert.deepEqual(
    svc.fields.map((f) => [f.name, f.offset, f.size, f.order, f.padding]),
    [
      ["vip", 0, 4, "be", false],
      ["dport", 4, 2, "be", false],
      ["proto", 6, 1, undefined, false],
      ["_pad0", 7, 1, undefined, true],
      ["slot", 8, 2, "le", false],
      ["_pad1", 10, 2, undefined, true],
    ],
  );
  const value = { vip: "10.96.0.10", dport: 443, proto: 6, slot: 3 };
  const raw = encode(svc, value);
  assert.deepEqual([...raw], [10, 96, 0, 10, 0x01, 0xbb, 6, 0, 3, 0, 0, 0]);
  assert.deepEqual(decode(svc, raw), value); // padding is not in the decoded value
});

Deno.test("struct() refuses implicit padding: misaligned fields and a ragged tail", () => {
  assert.throws(() => struct("skiff_bad", { proto: u8, addr: be32 }), {
    name: "TypeError",
    message: 'struct skiff_bad: field "addr" (be32) at offset 1 is not 4-byte aligned; ' +
      "add explicit padding before it",
  });
  assert.throws(() => struct("skiff_bad", { count: u64le, proto: u8 }), {
    name: "TypeError",
    message:
      "struct skiff_bad: size 9 is not a multiple of its alignment 8; add 7 bytes of tail padding",
  });
  assert.throws(() => struct("skiff_empty", {}), { message: "struct skiff_empty has no fields" });
});

Deno.test("struct encode errors name the field path, nested structs included", () => {
  const inner = struct("inner", { port: be16, _pad: pad(2) });
  const outer = struct("outer", { id: u32le, peer: inner, ids: array(u32le, 2) });
  assert.equal(outer.size, 16);
  assert.throws(() => encode(outer, { id: 1, peer: { port: 65536 }, ids: [1, 2] }), {
    name: "RangeError",
    message: "outer.peer: inner.port: 65536 is not a be16 (integer 0..65535)",
  });
  assert.throws(() => encode(outer, { id: 1, ids: [1, 2] } as never), {
    name: "TypeError",
    message: 'struct outer: field "peer" is missing',
  });
  assert.throws(() => encode(outer, { id: 1, peer: { port: 1 }, ids: [1] }), {
    message: "outer.ids: expected an array of 2, got an array of 1",
  });
  assert.deepEqual(decode(outer, encode(outer, { id: 7, peer: { port: 80 }, ids: [3, 4] })), {
    id: 7,
    peer: { port: 80 },
    ids: [3, 4],
  });
});

Deno.test("perCpu() lays out one 8-byte-aligned slot per CPU", () => {
  const c12 = struct("c12", { a: u32le, b: u32le, c: u32le });
  const values = perCpu(c12, 2);
  assert.equal(values.size, 32); // 12 rounded up to 16, times 2
  const raw = encode(values, [{ a: 1, b: 2, c: 3 }, { a: 4, b: 5, c: 6 }]);
  assert.deepEqual(new Uint32Array(raw.buffer), new Uint32Array([1, 2, 3, 0, 4, 5, 6, 0]));
  assert.throws(() => encode(values, [{ a: 1, b: 2, c: 3 }]), { name: "TypeError" });
});

Deno.test("BpfError names the operation, the map and the errno", () => {
  const e = new BpfError("update", "lb_services", 7);
  assert.equal(e.message, 'Cannot update map "lb_services": E2BIG (Argument list too long)');
  assert.equal(e.code, "E2BIG");
  assert.equal(errnoName(524), "ENOTSUPP");
  assert.equal(errnoName(4242), "E4242");
});

Deno.test("struct field names are data in the compiled encoder, whatever they contain", () => {
  const odd = 'x"]; throw new Error("injected"); //';
  const s = struct("odd", { [odd]: u32le, "a-b": u16le, _pad: pad(2) });
  const value = { [odd]: 5, "a-b": 6 };
  assert.deepEqual(decode(s, encode(s, value)), value);
  assert.throws(() => encode(s, { [odd]: 5 } as never), {
    message: 'struct odd: field "a-b" is missing',
  });
});
