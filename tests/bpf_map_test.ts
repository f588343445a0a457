/**
 * BpfMap and PerCpuMap against real maps: each test creates its maps with bpftool under its own
 * pin dir /sys/fs/bpf/skiff/sk<runid>, and removes the dir whatever happens.
 */
import assert from "node:assert/strict";
import {
  BpfMap,
  MapMismatchError,
  PerCpuMap,
  sumPerCpu,
  UpdateFlag,
} from "../agent/bpf/bpf_map.ts";
import { array, be16, ipv4, pad, struct, u32le, u64le, u8 } from "../agent/bpf/codec.ts";
import { BpfError } from "../agent/bpf/errno.ts";
import { possibleCpus } from "../agent/bpf/ffi.ts";
import { run } from "../agent/net/exec.ts";

const PIN_ROOT = "/sys/fs/bpf/skiff";

/** 8-byte key like a service frontend: address, port (network order), protocol. */
const Key = struct("test_key", { addr: ipv4, port: be16, proto: u8, _pad: pad(1) });
/** 16-byte value. */
const Value = struct("test_value", { packets: u64le, id: u32le, flags: u32le });

interface PinDir extends AsyncDisposable {
  readonly path: string;
  readonly prefix: string;
  /** Creates a map with bpftool and returns its pin path. */
  create(
    name: string,
    type: string,
    key: number,
    value: number,
    entries: number,
  ): Promise<string>;
}

async function pinDir(): Promise<PinDir> {
  const mounts = await Deno.readTextFile("/proc/self/mounts");
  if (!mounts.split("\n").some((l) => l.split(" ")[1] === "/sys/fs/bpf")) {
    await run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"]);
  }
  const prefix = `sk${crypto.randomUUID().slice(0, 6)}`;
  const path = `${PIN_ROOT}/${prefix}`;
  await Deno.mkdir(path, { recursive: true });
  return {
    path,
    prefix,
    async create(name, type, key, value, entries) {
      const pin = `${path}/${name}`;
      await run([
        "bpftool",
        "map",
        "create",
        pin,
        "type",
        type,
        "key",
        String(key),
        "value",
        String(value),
        "entries",
        String(entries),
        "name",
        name,
      ]); // deno-fmt-ignore
      return pin;
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

const web = { addr: "10.96.0.10", port: 80, proto: 6 };
const dns = { addr: "10.96.0.53", port: 53, proto: 17 };

Deno.test("BpfMap set/get/delete round-trip typed keys and values on a hash map", async () => {
  await using dir = await pinDir();
  using map = BpfMap.open(await dir.create("lb_services", "hash", 8, 16, 64), Key, Value);
  assert.equal(map.get(web), undefined);
  map.set(web, { packets: 2n ** 40n, id: 7, flags: 1 });
  map.set(dns, { packets: 0n, id: 8, flags: 0 });
  assert.deepEqual(map.get(web), { packets: 2n ** 40n, id: 7, flags: 1 });
  assert.equal(map.count(), 2);
  assert.equal(map.delete(web), true);
  assert.equal(map.delete(web), false);
  assert.equal(map.get(web), undefined);
  assert.deepEqual(map.get(dns), { packets: 0n, id: 8, flags: 0 });
  // The bytes in the kernel are the C layout: address and port in network order.
  const dump = JSON.parse((await run(["bpftool", "map", "dump", "pinned", map.path, "-j"])).stdout);
  assert.deepEqual(dump[0].key, ["0x0a", "0x60", "0x00", "0x35", "0x00", "0x35", "0x11", "0x00"]);
  assert.deepEqual(map.info(), {
    type: 1,
    typeName: "hash",
    id: map.info().id,
    keySize: 8,
    valueSize: 16,
    maxEntries: 64,
    flags: 0,
    name: "lb_services",
  });
});

Deno.test("set honours NOEXIST and EXIST with errors naming the map and the errno", async () => {
  await using dir = await pinDir();
  using map = BpfMap.open(await dir.create("lb_services", "hash", 8, 16, 64), Key, Value);
  const v = { packets: 1n, id: 1, flags: 0 };
  assert.throws(() => map.set(web, v, UpdateFlag.EXIST), (e: unknown) => {
    assert.ok(e instanceof BpfError);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.operation, "update");
    assert.equal(e.map, "lb_services");
    assert.equal(e.message, 'Cannot update map "lb_services": ENOENT (No such file or directory)');
    return true;
  });
  map.set(web, v, UpdateFlag.NOEXIST);
  assert.throws(
    () => map.set(web, v, UpdateFlag.NOEXIST),
    {
      name: "BpfError",
      code: "EEXIST",
      message: 'Cannot update map "lb_services": EEXIST (File exists)',
    },
  );
  map.set(web, { ...v, id: 2 }, UpdateFlag.EXIST);
  assert.equal(map.get(web)?.id, 2);
});

Deno.test("a full hash map refuses a new key with E2BIG", async () => {
  await using dir = await pinDir();
  using map = BpfMap.open(await dir.create("lb_small", "hash", 4, 8, 2), u32le, u64le);
  map.set(1, 1n);
  map.set(2, 2n);
  assert.throws(() => map.set(3, 3n), {
    name: "BpfError",
    code: "E2BIG",
    message: 'Cannot update map "lb_small": E2BIG (Argument list too long)',
  });
  map.set(2, 20n); // replacing an existing key still works
  assert.equal(map.get(2), 20n);
});

Deno.test("a value the codec cannot hold is refused before anything is written", async () => {
  await using dir = await pinDir();
  using map = BpfMap.open(await dir.create("lb_services", "hash", 8, 16, 64), Key, Value);
  assert.throws(() => map.set({ ...web, port: 70000 }, { packets: 1n, id: 1, flags: 0 }), {
    name: "RangeError",
    message: "test_key.port: 70000 is not a be16 (integer 0..65535)",
  });
  assert.throws(() => map.set({ ...web, addr: "10.96.0.256" }, { packets: 1n, id: 1, flags: 0 }), {
    name: "TypeError",
    message: 'test_key.addr: "10.96.0.256" is not an IPv4 address',
  });
  assert.equal(map.count(), 0);
});

Deno.test("keys() and entries() list every element of an lru_hash map", async () => {
  await using dir = await pinDir();
  using map = BpfMap.open(await dir.create("lb_affinity", "lru_hash", 4, 8, 128), u32le, u64le);
  for (let i = 0; i < 50; i++) map.set(i, BigInt(i * 3));
  const keys = [...map.keys()].sort((a, b) => a - b);
  assert.deepEqual(keys, Array.from({ length: 50 }, (_, i) => i));
  const entries = new Map(map.entries());
  assert.equal(entries.size, 50);
  for (const [k, v] of entries) assert.equal(v, BigInt(k * 3));
  assert.deepEqual(new Map(map), entries); // [Symbol.iterator] is entries()
});

Deno.test("updateBatch and deleteBatch write and remove many elements, skipping absent keys", async () => {
  await using dir = await pinDir();
  using map = BpfMap.open(await dir.create("lb_backends", "hash", 8, 16, 10000), Key, Value);
  const entries = Array.from({ length: 5000 }, (_, i) =>
    [
      { addr: `10.244.${i >> 8}.${i & 255}`, port: 8080, proto: 6 },
      { packets: BigInt(i), id: i, flags: 0 },
    ] as const);
  assert.deepEqual(map.updateBatch(entries), { count: 5000, batched: true });
  assert.equal(map.count(), 5000);
  assert.deepEqual(map.get(entries[4321][0]), entries[4321][1]);
  const all = map.readAll();
  assert.equal(all.length, 5000);
  const byId = new Map(all.map(([k, v]) => [v.id, k]));
  for (const [k, v] of entries) assert.deepEqual(byId.get(v.id), k);
  // Delete every other key plus keys that are not there (before, between and after).
  const doomed = [
    { addr: "192.0.2.1", port: 1, proto: 6 },
    ...entries.filter((_, i) => i % 2 === 0).map(([k]) => k),
    { addr: "192.0.2.2", port: 1, proto: 6 },
  ];
  doomed.splice(1000, 0, { addr: "192.0.2.3", port: 1, proto: 6 });
  assert.deepEqual(map.deleteBatch(doomed), { count: 2500, batched: true });
  assert.equal(map.count(), 2500);
  assert.equal(map.get(entries[0][0]), undefined);
  assert.deepEqual(map.get(entries[1][0]), entries[1][1]);
  // The kernel's batch update takes only ANY: NOEXIST loops, stops at the first existing key
  // and says how far it got.
  assert.throws(
    () =>
      map.updateBatch(
        [[doomed[1], entries[0][1]], [entries[1][0], entries[1][1]]],
        UpdateFlag.NOEXIST,
      ),
    {
      name: "BpfError",
      code: "EEXIST",
      message: 'Cannot update map "lb_backends": EEXIST (File exists), after 1 of 2 elements',
    },
  );
});

Deno.test("batches of Maglev-sized values are split into chunks and read back whole", async () => {
  await using dir = await pinDir();
  const M = 16381; // 64 KiB values: 1 MiB of scratch holds 16 per syscall
  const Row = array(u32le, M);
  using map = BpfMap.open(await dir.create("lb_maglev", "hash", 4, M * 4, 64), u32le, Row);
  const rows = Array.from(
    { length: 40 },
    (_, id) =>
      [id + 1, Array.from({ length: M }, (_, b) => (b * 7 + id) % 1000)] as [number, number[]],
  );
  assert.deepEqual(map.updateBatch(rows), { count: 40, batched: true });
  const all = new Map(map.readAll());
  assert.equal(all.size, 40);
  for (const [id, row] of rows) assert.deepEqual(all.get(id), row);
  assert.deepEqual(map.deleteBatch(rows.map(([id]) => id)), { count: 40, batched: true });
  assert.equal(map.count(), 0);
});

Deno.test("array maps batch-update; deleteBatch falls back to a loop and reports EINVAL", async () => {
  await using dir = await pinDir();
  using map = BpfMap.open(await dir.create("lb_maglev", "array", 4, 8, 8), u32le, u64le, {
    expect: { type: "array", maxEntries: 8 },
  });
  assert.deepEqual(map.updateBatch([[0, 5n], [7, 9n]]), { count: 2, batched: true });
  const expected = [[0, 5n], [1, 0n], [2, 0n], [3, 0n], [4, 0n], [5, 0n], [6, 0n], [7, 9n]];
  assert.deepEqual([...map], expected);
  assert.deepEqual(map.readAll(), expected);
  assert.deepEqual(map.deleteBatch([]), { count: 0, batched: true });
  // Arrays have no delete batch op (ENOTSUPP) and no delete at all (EINVAL).
  assert.throws(() => map.deleteBatch([1]), {
    name: "BpfError",
    code: "EINVAL",
    message: 'Cannot delete from map "lb_maglev": EINVAL (Invalid argument), after 0 of 1 keys',
  });
  assert.equal(map.get(8), undefined); // out of range reads as absent
});

Deno.test("batches on a map type without batch ops fall back to a loop and say so", async () => {
  await using dir = await pinDir();
  // A devmap (ifindex redirect table) has no batch ops in the kernel: ENOTSUPP.
  using map = BpfMap.open(await dir.create("lb_devmap", "devmap", 4, 4, 8), u32le, u32le, {
    expect: { type: "devmap" },
  });
  const lo = 1; // ifindex of lo, always there
  assert.deepEqual(map.updateBatch([[0, lo], [5, lo]]), { count: 2, batched: false });
  assert.equal(map.get(5), lo);
  assert.deepEqual(map.deleteBatch([0]), { count: 1, batched: false });
  assert.deepEqual([...map], [[5, lo]]);
  assert.deepEqual(map.readAll(), [[5, lo]]); // no lookup batch either: entries()
});

Deno.test("PerCpuMap reads one value per possible CPU and sums them", async () => {
  await using dir = await pinDir();
  const Counter = struct("counter", { packets: u64le, bytes: u64le });
  const cpus = possibleCpus();
  assert.ok(cpus >= 1);
  using hash = PerCpuMap.open(
    await dir.create("counter_src", "percpu_hash", 4, 16, 16),
    u32le,
    Counter,
  );
  assert.equal(hash.cpus, cpus);
  const perCpuValues = Array.from({ length: cpus }, (_, i) => ({
    packets: BigInt(i + 1),
    bytes: BigInt(100 * (i + 1)),
  }));
  hash.set(1, perCpuValues);
  assert.deepEqual(hash.get(1), perCpuValues);
  const n = BigInt(cpus);
  assert.deepEqual(hash.getSum(1), {
    packets: (n * (n + 1n)) / 2n,
    bytes: (100n * n * (n + 1n)) / 2n,
  });
  hash.setAll(2, { packets: 3n, bytes: 4n });
  assert.deepEqual(hash.getSum(2), { packets: 3n * n, bytes: 4n * n });
  assert.equal(hash.getSum(3), undefined);
  assert.deepEqual(new Map(hash.readAll()), new Map(hash.entries()));
  assert.throws(() => hash.set(4, perCpuValues.slice(1).concat(perCpuValues).slice(0, cpus + 1)), {
    name: "TypeError",
  });
  // A 12-byte value occupies 16 bytes per CPU in the syscall buffer (rounded up to 8).
  using arr = PerCpuMap.open(
    await dir.create("counter_tot", "percpu_array", 4, 12, 2),
    u32le,
    struct("c12", { a: u32le, b: u32le, c: u32le }),
  );
  arr.setAll(1, { a: 1, b: 2, c: 3 });
  assert.deepEqual(arr.getSum(1), { a: cpus, b: 2 * cpus, c: 3 * cpus });
  assert.deepEqual(arr.getSum(0), { a: 0, b: 0, c: 0 });
  assert.equal(sumPerCpu([1, 2, 3]), 6);
  assert.throws(() => sumPerCpu(["a", "b"]), { name: "TypeError" });
});

Deno.test("open rejects codecs or expectations that do not match the map, leaking no fd", async () => {
  await using dir = await pinDir();
  const pin = await dir.create("lb_services", "hash", 8, 16, 1024);
  const before = openFds();
  assert.throws(() => BpfMap.open(pin, u32le, Value), (e: unknown) => {
    assert.ok(e instanceof MapMismatchError);
    assert.equal(e.map, "lb_services");
    assert.equal(
      e.message,
      `Map "lb_services" at ${pin} does not match: key size is 8 bytes, the key codec (u32le) is 4`,
    );
    return true;
  });
  assert.throws(
    () => BpfMap.open(pin, Key, Value, { expect: { type: "lru_hash", maxEntries: 10 } }),
    {
      name: "MapMismatchError",
      message: `Map "lb_services" at ${pin} does not match: type is hash, expected lru_hash; ` +
        "max entries is 1024, expected 10",
    },
  );
  assert.throws(() => PerCpuMap.open(pin, Key, Value), {
    message: `Map "lb_services" at ${pin} does not match: it is a hash map, not a per-CPU map: ` +
      "open it with BpfMap.open()",
  });
  const percpu = await dir.create("counter_src", "percpu_hash", 4, 16, 16);
  assert.throws(() => BpfMap.open(percpu, u32le, Value), {
    message:
      `Map "counter_src" at ${percpu} does not match: it is a percpu_hash map: open it with ` +
      "PerCpuMap.open()",
  });
  assert.equal(openFds(), before);
});

Deno.test("errors use the pin's full name when the kernel truncated the map name", async () => {
  await using dir = await pinDir();
  const pin = await dir.create("counter_by_source", "hash", 4, 8, 1);
  using map = BpfMap.open(pin, u32le, u64le);
  assert.equal(map.info().name, "counter_by_sour"); // BPF_OBJ_NAME_LEN is 16, NUL included
  assert.equal(map.name, "counter_by_source");
  map.set(1, 1n);
  assert.throws(() => map.set(2, 2n), {
    message: 'Cannot update map "counter_by_source": E2BIG (Argument list too long)',
  });
});

Deno.test("opening a missing pin or a path that is no pin fails with the errno name", async () => {
  await using dir = await pinDir();
  assert.throws(() => BpfMap.open(`${dir.path}/nothing`, Key, Value), {
    name: "BpfError",
    code: "ENOENT",
    message: `Cannot open map "${dir.path}/nothing": ENOENT (No such file or directory)`,
  });
  assert.throws(() => BpfMap.open(dir.path, Key, Value), {
    name: "BpfError",
    code: "EACCES",
    message: `Cannot open map "${dir.path}": EACCES (Permission denied), ` +
      "it exists but is not a pinned BPF object",
  });
  assert.throws(() => BpfMap.open("/etc/hostname", Key, Value), { code: "EACCES" });
});

Deno.test("opening a pinned program as a map is refused, naming what it is", async () => {
  await using dir = await pinDir();
  const source = `${dir.path}.c`.replace(PIN_ROOT, "/tmp");
  const object = source.replace(/\.c$/, ".o");
  try {
    await Deno.writeTextFile(
      source,
      'int sk_noop(void *ctx) __attribute__((section("tc"), used));\n' +
        "int sk_noop(void *ctx) { return 0; }\n" +
        'char _license[] __attribute__((section("license"), used)) = "GPL";\n',
    );
    await run(["clang-19", "-O2", "-g", "-target", "bpf", "-c", source, "-o", object]);
    await run(["bpftool", "prog", "load", object, `${dir.path}/noop`]);
    const before = openFds();
    assert.throws(() => BpfMap.open(`${dir.path}/noop`, u32le, u32le), {
      name: "MapMismatchError",
      message: `Map "noop" at ${dir.path}/noop does not match: it is not a map but ` +
        "anon_inode:bpf-prog",
    });
    assert.equal(openFds(), before);
  } finally {
    await Deno.remove(source).catch(() => {});
    await Deno.remove(object).catch(() => {});
  }
});

Deno.test("`using` closes the map's fd; close() is idempotent and a closed map refuses work", async () => {
  await using dir = await pinDir();
  const pin = await dir.create("lb_services", "hash", 8, 16, 64);
  const before = openFds();
  let escaped: BpfMap<typeof web, unknown> | undefined;
  {
    using map = BpfMap.open(pin, Key, Value);
    escaped = map;
    assert.equal(openFds(), before + 1);
    assert.equal(map.isOpen, true);
  }
  assert.equal(openFds(), before);
  assert.equal(escaped.isOpen, false);
  escaped.close();
  assert.throws(() => escaped.get(web), {
    message: 'Cannot look up map "lb_services": it is closed',
  });
});
