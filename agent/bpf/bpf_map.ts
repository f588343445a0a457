/**
 * Typed access to a pinned BPF map through libbpf: `BpfMap<K, V>` for ordinary maps and
 * `PerCpuMap<K, V>` for per-CPU ones. Opening checks the kernel's map info (type, key and
 * value size, max entries) against the codecs, so a stale pin or a wrong struct fails at open,
 * not as garbage later. Every fd is owned by one object; `close()` and `using` release it.
 * @module
 */
import { bytes, type Codec, pad, perCpu, perCpuStride, struct, u32le, u64le } from "./codec.ts";
import { BpfError, Errno } from "./errno.ts";
import { closeFd, type Libbpf, libbpf, objGet, objGetInfo, possibleCpus, unwrap } from "./ffi.ts";

/** enum bpf_map_type names, as bpftool prints them, by number. */
const MAP_TYPES: readonly string[] = [
  "unspec",
  "hash",
  "array",
  "prog_array",
  "perf_event_array",
  "percpu_hash",
  "percpu_array",
  "stack_trace",
  "cgroup_array",
  "lru_hash",
  "lru_percpu_hash",
  "lpm_trie",
  "array_of_maps",
  "hash_of_maps",
  "devmap",
  "sockmap",
  "cpumap",
  "xskmap",
  "sockhash",
  "cgroup_storage",
  "reuseport_sockarray",
  "percpu_cgroup_storage",
  "queue",
  "stack",
  "sk_storage",
  "devmap_hash",
  "struct_ops",
  "ringbuf",
  "inode_storage",
  "task_storage",
  "bloom_filter",
  "user_ringbuf",
  "cgrp_storage",
  "arena",
]; // deno-fmt-ignore

const PER_CPU_TYPES = new Set(["percpu_hash", "percpu_array", "lru_percpu_hash"]);

/** The name bpftool uses for a map type number ("hash", "lru_hash"…), or "type<n>". */
export function mapTypeName(type: number): string {
  return MAP_TYPES[type] ?? `type${type}`;
}

/** What the kernel says about a map (struct bpf_map_info). */
export interface MapInfo {
  /** enum bpf_map_type. */
  readonly type: number;
  /** e.g. "hash", "percpu_array". */
  readonly typeName: string;
  /** The kernel's map id (bpftool map show id N). */
  readonly id: number;
  /** Bytes. */
  readonly keySize: number;
  /** Per element; for per-CPU maps, the size of one CPU's slot before rounding. */
  readonly valueSize: number;
  /** max_entries the map was created with. */
  readonly maxEntries: number;
  /** map_flags (BPF_F_NO_PREALLOC…). */
  readonly flags: number;
  /** The kernel's name for the map (at most 15 characters); may be empty. */
  readonly name: string;
}

// struct bpf_map_info from linux/bpf.h (the prefix that exists since 4.13, plus later fields).
const bpfMapInfo = struct("bpf_map_info", {
  type: u32le,
  id: u32le,
  keySize: u32le,
  valueSize: u32le,
  maxEntries: u32le,
  flags: u32le,
  name: bytes(16),
  ifindex: u32le,
  btfVmlinuxValueTypeId: u32le,
  netnsDev: u64le,
  netnsIno: u64le,
  btfId: u32le,
  btfKeyTypeId: u32le,
  btfValueTypeId: u32le,
  _pad: pad(4),
  mapExtra: u64le,
});

/** The `flags` of an update: BPF_ANY creates or replaces, NOEXIST only creates, EXIST only replaces. */
export const UpdateFlag = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;
/** One of {@linkcode UpdateFlag}. */
export type UpdateFlag = typeof UpdateFlag[keyof typeof UpdateFlag];

/** What a batch operation did. */
export interface BatchResult {
  /** Elements written or deleted. */
  readonly count: number;
  /**
   * True when the kernel's batch syscall did it; false when this map type has no batch op
   * (e.g. delete on an array) and skiff fell back to one syscall per element.
   */
  readonly batched: boolean;
}

/** Options for opening a pinned map. */
export interface OpenOptions {
  /** Also require these; a mismatch throws MapMismatchError. */
  readonly expect?: {
    /** A bpftool type name ("hash", "lru_hash"…) or the enum number. */
    readonly type?: string | number;
    readonly maxEntries?: number;
  };
}

/** The pinned map is not what the codecs or `expect` describe; thrown by `open()`. */
export class MapMismatchError extends Error {
  /** Builds the message from the problems. */
  constructor(
    /** The map's kernel name (or the pin's file name when the kernel name is empty). */
    readonly map: string,
    readonly path: string,
    /** One line per difference, e.g. "key size is 8 bytes, the key codec (u32le) is 4". */
    readonly problems: readonly string[],
  ) {
    super(`Map "${map}" at ${path} does not match: ${problems.join("; ")}`);
    this.name = "MapMismatchError";
  }
}

// Elements per batch syscall: at most 4096, and at most 1 MiB of keys + values, so the scratch
// buffers stay small even for a 64 KiB Maglev row; the syscall cost per chunk is noise.
const BATCH_MAX_ELEMENTS = 4096;
const BATCH_MAX_BYTES = 1 << 20;

function batchChunk(keySize: number, valueSize: number): number {
  return Math.max(
    1,
    Math.min(BATCH_MAX_ELEMENTS, Math.floor(BATCH_MAX_BYTES / (keySize + valueSize))),
  );
}

interface Opened {
  fd: number;
  info: MapInfo;
  name: string;
}

function openChecked(
  path: string,
  key: Codec<unknown>,
  value: Codec<unknown>,
  perCpuWanted: boolean,
  options: OpenOptions,
): Opened {
  const fallbackName = path.split("/").pop() || path;
  let fd: number;
  try {
    fd = objGet(path);
  } catch (error) {
    // bpf(BPF_OBJ_GET) answers EACCES for a file that exists but is no pin: say so.
    if (error instanceof BpfError && error.errno === Errno.EACCES && exists(path)) {
      throw new BpfError("open", path, error.errno, "it exists but is not a pinned BPF object");
    }
    throw error;
  }
  try {
    const kind = fdKind(fd);
    if (kind !== "anon_inode:bpf-map") {
      throw new MapMismatchError(fallbackName, path, [`it is not a map but ${kind}`]);
    }
    const info = readMapInfo(fd, fallbackName);
    // The kernel keeps 15 characters of a name; a pin named after the map has all of them.
    const name = fallbackName.startsWith(info.name) ? fallbackName : info.name;
    const problems: string[] = [];
    if (info.keySize !== key.size) {
      problems.push(
        `key size is ${info.keySize} bytes, the key codec (${key.kind}) is ${key.size}`,
      );
    }
    if (info.valueSize !== value.size) {
      problems.push(
        `value size is ${info.valueSize} bytes, the value codec (${value.kind}) is ${value.size}`,
      );
    }
    const isPerCpu = PER_CPU_TYPES.has(info.typeName);
    if (isPerCpu && !perCpuWanted) {
      problems.push(`it is a ${info.typeName} map: open it with PerCpuMap.open()`);
    } else if (!isPerCpu && perCpuWanted) {
      problems.push(`it is a ${info.typeName} map, not a per-CPU map: open it with BpfMap.open()`);
    }
    const want = options.expect;
    if (want?.type !== undefined) {
      const wantName = typeof want.type === "number" ? mapTypeName(want.type) : want.type;
      if (wantName !== info.typeName) {
        problems.push(`type is ${info.typeName}, expected ${wantName}`);
      }
    }
    if (want?.maxEntries !== undefined && want.maxEntries !== info.maxEntries) {
      problems.push(`max entries is ${info.maxEntries}, expected ${want.maxEntries}`);
    }
    if (problems.length > 0) throw new MapMismatchError(name, path, problems);
    return { fd, info, name };
  } catch (error) {
    closeFd(fd, fallbackName);
    throw error;
  }
}

/** What an fd is, as /proc names it: "anon_inode:bpf-map", "anon_inode:bpf-prog"… */
function fdKind(fd: number): string {
  try {
    return Deno.readLinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return "anon_inode:bpf-map"; // no /proc: let the info check speak
  }
}

function readMapInfo(fd: number, what: string): MapInfo {
  const raw = new Uint8Array(bpfMapInfo.size);
  objGetInfo(fd, raw, what);
  const decoded = bpfMapInfo.decode(new DataView(raw.buffer), 0);
  return {
    type: decoded.type,
    typeName: mapTypeName(decoded.type),
    id: decoded.id,
    keySize: decoded.keySize,
    valueSize: decoded.valueSize,
    maxEntries: decoded.maxEntries,
    flags: decoded.flags,
    name: new TextDecoder().decode(decoded.name).replace(/\0.*$/s, ""),
  };
}

/** A pinned map seen without codecs: what the kernel says and how full it is. */
export interface PinnedMapSummary {
  readonly path: string;
  readonly info: MapInfo;
  /**
   * Keys present now; for array maps (every slot always exists) max entries; undefined when
   * the map type cannot be walked (ring buffers, queues…), with the reason in `entriesError`.
   */
  readonly entries: number | undefined;
  readonly entriesError?: string;
}

const ARRAY_TYPES = new Set(["array", "percpu_array", "prog_array", "cgroup_array", "arena"]);

/**
 * Describes the map pinned at `path` without knowing its structs (for listings such as
 * `skiff maps`): undefined when the pin is a program or link, BpfError when it cannot be
 * opened. Counting walks the keys (one syscall each); no fd stays open.
 */
export function summarizePinnedMap(path: string): PinnedMapSummary | undefined {
  const what = path.split("/").pop() || path;
  const fd = objGet(path);
  let info: MapInfo;
  try {
    if (fdKind(fd) !== "anon_inode:bpf-map") return undefined;
    info = readMapInfo(fd, what);
  } finally {
    closeFd(fd, what);
  }
  if (ARRAY_TYPES.has(info.typeName)) return { path, info, entries: info.maxEntries };
  try {
    if (info.keySize === 0) throw new Error(`a ${info.typeName} map has no keys to count`);
    const key = bytes(info.keySize);
    const value = bytes(Math.max(1, info.valueSize));
    using map = PER_CPU_TYPES.has(info.typeName)
      ? PerCpuMap.open(path, key, value)
      : BpfMap.open(path, key, value);
    return { path, info, entries: map.count() };
  } catch (error) {
    return { path, info, entries: undefined, entriesError: (error as Error).message };
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * What both map kinds share: the fd, scratch buffers reused by every call (no allocation per
 * get/set), iteration and batches. `W` is the value as it crosses the syscall (V, or V[] for
 * per-CPU maps).
 */
export abstract class MapHandle<K, W> implements Disposable {
  #fd: number;
  readonly #name: string;
  readonly #info: MapInfo;
  readonly #path: string;
  readonly #key: Codec<K>;
  readonly #value: Codec<W>;
  readonly #lib: Libbpf;
  readonly #keyBuf: Uint8Array;
  readonly #keyView: DataView;
  readonly #valueBuf: Uint8Array;
  readonly #valueView: DataView;
  #batchKeys?: Uint8Array;
  #batchValues?: Uint8Array;
  readonly #count = new Uint32Array(1);
  readonly #batchOpts = new Uint8Array(24); // struct bpf_map_batch_opts {size_t sz; u64 elem_flags; u64 flags}
  #batchSupported = { update: true, delete: true, lookup: true };

  /** Subclasses' open() checks the map, then hands the fd over. */
  protected constructor(opened: Opened, path: string, key: Codec<K>, value: Codec<W>) {
    this.#fd = opened.fd;
    this.#name = opened.name;
    this.#info = opened.info;
    this.#path = path;
    this.#key = key;
    this.#value = value;
    this.#lib = libbpf();
    this.#keyBuf = new Uint8Array(key.size);
    this.#keyView = new DataView(this.#keyBuf.buffer);
    this.#valueBuf = new Uint8Array(value.size);
    this.#valueView = new DataView(this.#valueBuf.buffer);
    new DataView(this.#batchOpts.buffer).setBigUint64(0, 24n, true);
  }

  /**
   * The map's name in messages: the pin's file name when it extends the kernel's (at most 15
   * characters) name, else the kernel's name.
   */
  get name(): string {
    return this.#name;
  }

  /** The pin path it was opened from. */
  get path(): string {
    return this.#path;
  }

  /** The kernel's description of the map, read at open. */
  info(): MapInfo {
    return this.#info;
  }

  /** False once close() ran. */
  get isOpen(): boolean {
    return this.#fd >= 0;
  }

  #live(operation: string): number {
    if (this.#fd < 0) throw new Error(`Cannot ${operation} map "${this.#name}": it is closed`);
    return this.#fd;
  }

  // Every failing return code goes through ffi.ts's unwrap(), the one place that makes errors.
  #fail(rc: number, operation: string, detail?: string): never {
    unwrap(rc, operation, this.#name, detail);
    throw new RangeError(`#fail() called with a non-negative return code ${rc}`);
  }

  /** The value at `key`, or undefined when there is none. */
  get(key: K): W | undefined {
    const fd = this.#live("look up");
    this.#key.encode(key, this.#keyView, 0);
    const rc = this.#lib.bpf_map_lookup_elem(fd, this.#keyBuf, this.#valueBuf);
    if (rc === -Errno.ENOENT) return undefined;
    if (rc < 0) this.#fail(rc, "look up");
    return this.#value.decode(this.#valueView, 0);
  }

  /**
   * Copies the raw value bytes at `key` into `out` (exactly the value size) without decoding:
   * false when there is none. For reading many large values (64 KiB Maglev rows) through one
   * buffer instead of a new one per get().
   */
  getRaw(key: K, out: Uint8Array): boolean {
    const fd = this.#live("look up");
    if (out.length !== this.#value.size) {
      throw new RangeError(
        `getRaw on map "${this.#name}" needs a buffer of ${this.#value.size} bytes, got ${out.length}`,
      );
    }
    this.#key.encode(key, this.#keyView, 0);
    const rc = this.#lib.bpf_map_lookup_elem(fd, this.#keyBuf, out);
    if (rc === -Errno.ENOENT) return false;
    if (rc < 0) this.#fail(rc, "look up");
    return true;
  }

  /** Creates or replaces the value at `key`, as `flag` allows (default UpdateFlag.ANY). */
  set(key: K, value: W, flag: UpdateFlag = UpdateFlag.ANY): void {
    const fd = this.#live("update");
    this.#key.encode(key, this.#keyView, 0);
    this.#value.encode(value, this.#valueView, 0);
    const rc = this.#lib.bpf_map_update_elem(fd, this.#keyBuf, this.#valueBuf, FLAG_ARG[flag]);
    if (rc < 0) this.#fail(rc, "update");
  }

  /** Removes `key`; false when it was not there. */
  delete(key: K): boolean {
    const fd = this.#live("delete from");
    this.#key.encode(key, this.#keyView, 0);
    const rc = this.#lib.bpf_map_delete_elem(fd, this.#keyBuf);
    if (rc === -Errno.ENOENT) return false;
    if (rc < 0) this.#fail(rc, "delete from");
    return true;
  }

  /**
   * Every key, in the kernel's order. Keys written during iteration may or may not appear; in
   * a hash map, deleting the current key makes the kernel restart from the first key.
   */
  *keys(): Generator<K> {
    for (const raw of this.#rawKeys()) yield this.#key.decode(raw.view, 0);
  }

  /** Every [key, value]; a key deleted between listing and lookup is skipped. */
  *entries(): Generator<[K, W]> {
    const value = new Uint8Array(this.#value.size);
    const valueView = new DataView(value.buffer);
    for (const raw of this.#rawKeys()) {
      const rc = this.#lib.bpf_map_lookup_elem(this.#live("iterate"), raw.bytes, value);
      if (rc === -Errno.ENOENT) continue;
      if (rc < 0) this.#fail(rc, "iterate");
      yield [this.#key.decode(raw.view, 0), this.#value.decode(valueView, 0)];
    }
  }

  /** Same as entries(): `for (const [k, v] of map)`. */
  [Symbol.iterator](): Generator<[K, W]> {
    return this.entries();
  }

  /** How many keys the map holds now (one syscall per key; array maps hold max_entries). */
  count(): number {
    let n = 0;
    for (const _ of this.#rawKeys()) n++;
    return n;
  }

  // Own buffers per iteration: the caller may get/set on this map between steps.
  *#rawKeys(): Generator<{ bytes: Uint8Array; view: DataView }> {
    let current = new Uint8Array(this.#key.size);
    let next = new Uint8Array(this.#key.size);
    let rc = this.#lib.bpf_map_get_next_key(this.#live("iterate"), null, next);
    // A hash map restarts from its first key when the current one is deleted meanwhile: bound
    // the walk so a map churned by the datapath cannot keep us here forever.
    const limit = 4 * this.#info.maxEntries + 64;
    let seen = 0;
    while (rc === 0) {
      if (++seen > limit) {
        throw new Error(
          `Cannot iterate map "${this.#name}": over ${limit} keys seen in one walk of a map of ${this.#info.maxEntries}; it changes faster than it can be read`,
        );
      }
      [current, next] = [next, current];
      yield { bytes: current, view: new DataView(current.buffer) };
      rc = this.#lib.bpf_map_get_next_key(this.#live("iterate"), current, next);
    }
    if (rc !== -Errno.ENOENT) this.#fail(rc, "iterate");
  }

  /**
   * Writes many entries with BPF_MAP_UPDATE_BATCH (chunks of ≤ 4096 elements and ≤ 1 MiB). Maps without a batch op,
   * and flags other than ANY (the kernel's batch update refuses them), fall back to one update
   * per element, which `batched: false` reports. On an error, the
   * entries before the failing one are written and the BpfError says how many.
   */
  updateBatch(
    entries: readonly (readonly [K, W])[],
    flag: UpdateFlag = UpdateFlag.ANY,
  ): BatchResult {
    const fd = this.#live("update");
    // The kernel's generic batch update takes no NOEXIST/EXIST (EINVAL): those loop.
    if (!this.#batchSupported.update || flag !== UpdateFlag.ANY) {
      return this.#updateLoop(entries, flag, 0);
    }
    const ks = this.#key.size;
    const vs = this.#value.size;
    const max = batchChunk(ks, vs);
    const chunk = Math.min(entries.length, max);
    if (!this.#batchKeys || this.#batchKeys.length < chunk * ks) {
      this.#batchKeys = new Uint8Array(chunk * ks);
    }
    if (!this.#batchValues || this.#batchValues.length < chunk * vs) {
      this.#batchValues = new Uint8Array(chunk * vs);
    }
    const keys = this.#batchKeys;
    const values = this.#batchValues;
    const keyView = new DataView(keys.buffer);
    const valueView = new DataView(values.buffer);
    const optsView = new DataView(this.#batchOpts.buffer);
    optsView.setBigUint64(8, 0n, true); // elem_flags: BPF_ANY
    let done = 0;
    while (done < entries.length) {
      const n = Math.min(max, entries.length - done);
      for (let i = 0; i < n; i++) {
        const [k, v] = entries[done + i];
        this.#key.encode(k, keyView, i * ks);
        this.#value.encode(v, valueView, i * vs);
      }
      this.#count[0] = n;
      const rc = this.#lib.bpf_map_update_batch(fd, keys, values, this.#count, this.#batchOpts);
      if (rc < 0) {
        if (done === 0 && unsupported(rc)) {
          // Refused before any element was touched (count is left as passed in).
          this.#batchSupported.update = false;
          return this.#updateLoop(entries, flag, 0);
        }
        // The kernel reports progress in count, except when it refuses the call up front
        // (then count is left as passed in).
        const progress = this.#count[0] < n ? this.#count[0] : 0;
        const written = done + progress;
        this.#fail(rc, "update", `after ${written} of ${entries.length} elements (batch)`);
      }
      done += n;
    }
    return { count: done, batched: true };
  }

  #updateLoop(entries: readonly (readonly [K, W])[], flag: UpdateFlag, from: number): BatchResult {
    for (let i = from; i < entries.length; i++) {
      const [k, v] = entries[i];
      this.#key.encode(k, this.#keyView, 0);
      this.#value.encode(v, this.#valueView, 0);
      const rc = this.#lib.bpf_map_update_elem(
        this.#fd,
        this.#keyBuf,
        this.#valueBuf,
        FLAG_ARG[flag],
      );
      if (rc < 0) this.#fail(rc, "update", `after ${i} of ${entries.length} elements`);
    }
    return { count: entries.length - from, batched: false };
  }

  /**
   * Deletes many keys with BPF_MAP_DELETE_BATCH; keys already absent are skipped, not errors
   * (a reconciler deleting what it saw must not fail on a race). `count` is how many existed.
   * Map types without the batch op (arrays have none) fall back to a loop: `batched: false`.
   */
  deleteBatch(keys: readonly K[]): BatchResult {
    const fd = this.#live("delete from");
    if (!this.#batchSupported.delete) return this.#deleteLoop(keys);
    const ks = this.#key.size;
    const max = batchChunk(ks, 0);
    const chunk = Math.min(keys.length, max);
    if (!this.#batchKeys || this.#batchKeys.length < chunk * ks) {
      this.#batchKeys = new Uint8Array(chunk * ks);
    }
    const buf = this.#batchKeys;
    const view = new DataView(buf.buffer);
    new DataView(this.#batchOpts.buffer).setBigUint64(8, 0n, true);
    let deleted = 0;
    let done = 0;
    while (done < keys.length) {
      const n = Math.min(max, keys.length - done);
      for (let i = 0; i < n; i++) this.#key.encode(keys[done + i], view, i * ks);
      let start = 0;
      while (start < n) {
        this.#count[0] = n - start;
        const from = start === 0 ? buf : buf.subarray(start * ks);
        const rc = this.#lib.bpf_map_delete_batch(fd, from, this.#count, this.#batchOpts);
        if (rc === 0) {
          deleted += n - start;
          break;
        }
        if (done === 0 && start === 0 && unsupported(rc)) {
          // Refused before any element was touched (count is left as passed in).
          this.#batchSupported.delete = false;
          return this.#deleteLoop(keys);
        }
        const processed = this.#count[0];
        deleted += processed;
        if (rc !== -Errno.ENOENT) {
          const at = done + start + processed;
          this.#fail(rc, "delete from", `after ${at} of ${keys.length} keys (batch)`);
        }
        start += processed + 1; // that key was already gone: skip it, carry on
      }
      done += n;
    }
    return { count: deleted, batched: true };
  }

  #deleteLoop(keys: readonly K[]): BatchResult {
    let deleted = 0;
    for (let i = 0; i < keys.length; i++) {
      this.#key.encode(keys[i], this.#keyView, 0);
      const rc = this.#lib.bpf_map_delete_elem(this.#fd, this.#keyBuf);
      if (rc === 0) deleted++;
      else if (rc !== -Errno.ENOENT) {
        this.#fail(rc, "delete from", `after ${i} of ${keys.length} keys`);
      }
    }
    return { count: deleted, batched: false };
  }

  /**
   * Every [key, value] read with BPF_MAP_LOOKUP_BATCH, a chunk of elements per syscall instead
   * of two syscalls per element; maps without the op fall back to entries(). Like entries(),
   * it is not a snapshot: concurrent writes may or may not show.
   */
  readAll(): [K, W][] {
    const fd = this.#live("read");
    if (!this.#batchSupported.lookup) return [...this.entries()];
    const ks = this.#key.size;
    const vs = this.#value.size;
    let chunk = Math.min(this.#info.maxEntries, batchChunk(ks, vs));
    let keys = new Uint8Array(chunk * ks);
    let values = new Uint8Array(chunk * vs);
    // Opaque resume tokens: a bucket index for hashes, a key for arrays; key size or 8 bytes.
    let tokenIn = new Uint8Array(Math.max(ks, 8));
    let tokenOut = new Uint8Array(Math.max(ks, 8));
    new DataView(this.#batchOpts.buffer).setBigUint64(8, 0n, true);
    const out: [K, W][] = [];
    let first = true;
    for (;;) {
      this.#count[0] = chunk;
      const rc = this.#lib.bpf_map_lookup_batch(
        fd,
        first ? null : tokenIn,
        tokenOut,
        keys,
        values,
        this.#count,
        this.#batchOpts,
      );
      if (rc < 0 && rc !== -Errno.ENOENT) {
        if (first && unsupported(rc)) {
          this.#batchSupported.lookup = false;
          return [...this.entries()];
        }
        if (rc === -Errno.ENOSPC && chunk < this.#info.maxEntries) {
          // One hash bucket holds more elements than fit: retry from the same place, bigger.
          chunk = Math.min(chunk * 4, this.#info.maxEntries);
          keys = new Uint8Array(chunk * ks);
          values = new Uint8Array(chunk * vs);
          continue;
        }
        this.#fail(rc, "read", `after ${out.length} elements (batch)`);
      }
      const n = this.#count[0]; // written back on success and on ENOENT alike
      const keyView = new DataView(keys.buffer);
      const valueView = new DataView(values.buffer);
      for (let i = 0; i < n; i++) {
        out.push([this.#key.decode(keyView, i * ks), this.#value.decode(valueView, i * vs)]);
      }
      if (rc === -Errno.ENOENT) return out; // the last chunk (maybe empty) came with ENOENT
      [tokenIn, tokenOut] = [tokenOut, tokenIn];
      first = false;
    }
  }

  /** Releases the fd (the pinned map stays). Safe to call twice. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeFd(fd, this.#name);
  }

  /** close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

// The u64 `flags` argument crosses FFI as a bigint; these avoid a BigInt() per call.
const FLAG_ARG = [0n, 1n, 2n] as const;

function unsupported(rc: number): boolean {
  return rc === -Errno.ENOTSUPP || rc === -Errno.EOPNOTSUPP;
}

/** A pinned, non-per-CPU map (hash, lru_hash, array, lpm_trie…) with typed keys and values. */
export class BpfMap<K, V> extends MapHandle<K, V> {
  private constructor(opened: Opened, path: string, key: Codec<K>, value: Codec<V>) {
    super(opened, path, key, value);
  }

  /**
   * Opens the map pinned at `path`. Throws BpfError (ENOENT for a missing pin…) when it
   * cannot be opened and MapMismatchError when its key/value size, type or max entries differ
   * from the codecs and `options.expect`; no fd is left open on failure.
   */
  static open<K, V>(
    path: string,
    key: Codec<K>,
    value: Codec<V>,
    options: OpenOptions = {},
  ): BpfMap<K, V> {
    return new BpfMap(openChecked(path, key, value, false, options), path, key, value);
  }
}

/**
 * A pinned per-CPU map (percpu_hash, percpu_array, lru_percpu_hash): each value is an array
 * with one element per possible CPU. `setAll` writes one value to every CPU, `getSum` adds
 * the CPUs' values up (numbers, bigints, or structs of them).
 */
export class PerCpuMap<K, V> extends MapHandle<K, V[]> {
  /** Possible CPUs: the length of every value array. */
  readonly cpus: number;

  private constructor(opened: Opened, path: string, key: Codec<K>, value: Codec<V[]>) {
    super(opened, path, key, value);
    this.cpus = value.size / perCpuStride(opened.info.valueSize);
  }

  /** Like BpfMap.open; `value` is the codec of ONE CPU's value (the map's value_size). */
  static open<K, V>(
    path: string,
    key: Codec<K>,
    value: Codec<V>,
    options: OpenOptions = {},
  ): PerCpuMap<K, V> {
    const opened = openChecked(path, key, value, true, options);
    return new PerCpuMap(opened, path, key, perCpu(value, possibleCpus()));
  }

  /** Writes `value` to every CPU's slot of `key`. */
  setAll(key: K, value: V, flag: UpdateFlag = UpdateFlag.ANY): void {
    this.set(key, new Array<V>(this.cpus).fill(value), flag);
  }

  /** The sum over CPUs of the value at `key`, or undefined when there is none. */
  getSum(key: K): V | undefined {
    const values = this.get(key);
    return values === undefined ? undefined : sumPerCpu(values);
  }
}

/**
 * Adds per-CPU values: numbers and bigints add up, objects add field by field (recursively);
 * anything else (strings, byte arrays) throws TypeError, since a sum of them means nothing.
 */
export function sumPerCpu<V>(values: readonly V[]): V {
  if (values.length === 0) throw new TypeError("sumPerCpu() needs at least one value");
  return values.reduce((a, b) => add(a, b, "value") as V);
}

function add(a: unknown, b: unknown, path: string): unknown {
  if (typeof a === "number" && typeof b === "number") return a + b;
  if (typeof a === "bigint" && typeof b === "bigint") return a + b;
  if (
    typeof a === "object" && a !== null && typeof b === "object" && b !== null &&
    !(a instanceof Uint8Array) && !Array.isArray(a)
  ) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(a)) {
      out[k] = add(v, (b as Record<string, unknown>)[k], `${path}.${k}`);
    }
    return out;
  }
  throw new TypeError(`Cannot sum per-CPU ${path}: ${typeof a} is not a number, bigint or struct`);
}
