/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size whose
 * slots name backends, so a flow hash picks a backend and removing one of N backends moves
 * only about 1/N of the slots. Pure and deterministic: the same backends give the same table.
 *
 * How it works: each backend's key gives an offset and a skip from two independent hashes;
 * its permutation of the table is offset, offset+skip, offset+2·skip … (mod size, a prime, so
 * every skip visits every slot). Backends take turns, in key order, claiming their next free
 * preferred slot until the table is full; with equal weights each backend gets ⌊M/N⌋ or ⌈M/N⌉.
 * @module
 */

/** Default table size: a prime, as in Cilium (M ≫ N keeps disruption near 1/N). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 16381;

/** One backend in the table. */
export interface MaglevBackend {
  /** What the table slots hold (the backend id of the data plane). */
  readonly id: number;
  /**
   * Stable identity that drives the backend's permutation, e.g. "10.244.1.5:8080". It must
   * not depend on the id, so a backend keeps its slots when ids are reallocated.
   */
  readonly key: string;
  /** Relative weight (default 1); 0 gives the backend no slots. */
  readonly weight?: number;
}

/** True when n is a prime number (trial division; fine for table sizes). */
export function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  if (n % 3 === 0) return n === 3;
  for (let d = 5; d * d <= n; d += 6) {
    if (n % d === 0 || n % (d + 2) === 0) return false;
  }
  return true;
}

/**
 * Builds a Maglev lookup table of `size` slots, each holding a backend id. The result does
 * not depend on the order of `backends`. With no backends it returns an empty array (nothing
 * to choose from: the data plane must treat the service as having no backend).
 * Throws RangeError when size is not a prime greater than the number of backends, and
 * TypeError on duplicate keys or ids, bad ids or bad weights. With `into` (a Uint32Array of
 * `size`), the table is written there and `into` is returned: a caller that writes tables to a
 * map and drops them reuses one buffer instead of allocating 64 KiB per table.
 */
export function buildMaglevTable(
  backends: readonly MaglevBackend[],
  size: number = DEFAULT_MAGLEV_TABLE_SIZE,
  into?: Uint32Array,
): Uint32Array {
  if (!isPrime(size)) throw new RangeError(`Maglev table size ${size} is not a prime`);
  if (backends.length >= size) {
    throw new RangeError(
      `Maglev table size ${size} must be greater than the number of backends (${backends.length})`,
    );
  }
  const sorted = checkedAndSorted(backends);
  const weights = sorted.map((b) => b.weight ?? 1);
  const maxWeight = Math.max(0, ...weights);
  if (sorted.length === 0) return new Uint32Array(0);
  if (into !== undefined && into.length !== size) {
    throw new RangeError(`Maglev output buffer has ${into.length} slots, not ${size}`);
  }
  if (maxWeight === 0) throw new TypeError("Maglev backends all have weight 0");

  const n = sorted.length;
  const position = new Int32Array(n); // current permutation entry of each backend (int32: fast V8 arithmetic)
  const skip = new Int32Array(n);
  const ids = new Uint32Array(n);
  const gain = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const bytes = encoder.encode(sorted[i].key);
    position[i] = fmix32(fnv1a32(bytes)) % size;
    skip[i] = (murmur3_32(bytes, SKIP_SEED) % (size - 1)) + 1;
    ids[i] = sorted[i].id;
    gain[i] = weights[i] / maxWeight;
  }

  const table = into ?? new Uint32Array(size);
  return gain.every((g) => g === 1)
    ? fill(table, position, skip, ids)
    : fillWeighted(table, position, skip, ids, gain);
}

/**
 * Whether `table` can be the table `buildMaglevTable(backends, table.length)` builds, without
 * building it (a build costs ~0.5 ms; this reads the table once). True when every slot names
 * one of the backends, each backend holds ⌊M/N⌋ or ⌈M/N⌉ slots, and each backend holds the
 * slot it claims in the first round (its first preferred slot not claimed by a backend before
 * it in key order), which pins the permutation hashes and the key order. Equal weights only:
 * with any other weight (or none) it answers false, and the caller rebuilds.
 */
export function maglevTableMatches(
  table: Uint32Array,
  backends: readonly MaglevBackend[],
): boolean {
  const size = table.length;
  const n = backends.length;
  if (n === 0) return table.every((v) => v === 0);
  if (n >= size || backends.some((b) => (b.weight ?? 1) !== 1)) return false;
  const sorted = checkedAndSorted(backends);
  // ids index a count array when small (they are: map ids are handed out lowest first)
  let maxId = 0;
  for (const b of sorted) maxId = Math.max(maxId, b.id);
  if (maxId >= 1 << 22) return false;
  // id -> 1 + index in a reused array, cleared again after (no 4 × maxId bytes per call)
  if (indexOfId.length <= maxId) {
    indexOfId = new Int32Array(Math.max(maxId + 1, 2 * indexOfId.length));
  }
  const index = indexOfId;
  sorted.forEach((b, i) => (index[b.id] = i + 1));
  const counts = new Int32Array(n);
  let foreign = false;
  for (let c = 0; c < size; c++) {
    const id = table[c];
    const i = id <= maxId ? index[id] : 0;
    if (i === 0) {
      foreign = true;
      break;
    }
    counts[i - 1]++;
  }
  for (const b of sorted) index[b.id] = 0;
  if (foreign) return false;
  const low = Math.floor(size / n);
  for (let i = 0; i < n; i++) if (counts[i] !== low && counts[i] !== low + 1) return false;
  const claimed = new Set<number>();
  for (const b of sorted) {
    const bytes = encoder.encode(b.key);
    const step = (murmur3_32(bytes, SKIP_SEED) % (size - 1)) + 1;
    let c = fmix32(fnv1a32(bytes)) % size;
    while (claimed.has(c)) c = (c + step) % size;
    if (table[c] !== b.id) return false;
    claimed.add(c);
  }
  return true;
}

let indexOfId = new Int32Array(1024);

/** Equal weights: backends take one slot per turn (the hot path, kept branch-free). */
function fill(
  table: Uint32Array,
  position: Int32Array,
  skip: Int32Array,
  ids: Uint32Array,
): Uint32Array {
  const size = table.length;
  const n = ids.length;
  const taken = takenScratch(size);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      const step = skip[i];
      let c = position[i];
      while (taken[c] !== 0) {
        c += step;
        if (c >= size) c -= size;
      }
      taken[c] = 1;
      table[c] = ids[i];
      c += step;
      position[i] = c >= size ? c - size : c;
      if (++filled === size) return table;
    }
  }
}

let taken: Uint8Array = new Uint8Array(0);

/** A zeroed "slot taken" map of `size`, reused across builds (one table is built at a time). */
function takenScratch(size: number): Uint8Array {
  if (taken.length !== size) taken = new Uint8Array(size);
  else taken.fill(0);
  return taken;
}

/** Weighted turns: per round a backend gains weight/maxWeight credit and claims a slot per
 * whole credit, so the heaviest claims every round and the others proportionally. */
function fillWeighted(
  table: Uint32Array,
  position: Int32Array,
  skip: Int32Array,
  ids: Uint32Array,
  gain: Float64Array,
): Uint32Array {
  const size = table.length;
  const n = ids.length;
  const credit = new Float64Array(n);
  const taken = takenScratch(size);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      credit[i] += gain[i];
      if (credit[i] < 1) continue;
      credit[i] -= 1;
      const step = skip[i];
      let c = position[i];
      while (taken[c] !== 0) {
        c += step;
        if (c >= size) c -= size;
      }
      taken[c] = 1;
      table[c] = ids[i];
      c += step;
      position[i] = c >= size ? c - size : c;
      if (++filled === size) return table;
    }
  }
}

const encoder = new TextEncoder();
const SKIP_SEED = 0x9747b28c;

function checkedAndSorted(backends: readonly MaglevBackend[]): MaglevBackend[] {
  const keys = new Set<string>();
  const ids = new Set<number>();
  for (const b of backends) {
    if (!Number.isInteger(b.id) || b.id < 0 || b.id > 0xffffffff) {
      throw new TypeError(
        `Maglev backend "${b.key}" has id ${b.id}, not a 32-bit unsigned integer`,
      );
    }
    if (keys.has(b.key)) throw new TypeError(`Maglev backend key "${b.key}" appears twice`);
    if (ids.has(b.id)) throw new TypeError(`Maglev backend id ${b.id} appears twice`);
    const w = b.weight ?? 1;
    if (!Number.isInteger(w) || w < 0 || w > 0xffff) {
      throw new TypeError(`Maglev backend "${b.key}" has weight ${w}, not an integer 0..65535`);
    }
    keys.add(b.key);
    ids.add(b.id);
  }
  // Turn order breaks ties between backends that want the same slot; sorting by key makes the
  // table independent of input order. Plain code-unit comparison: locale-free and stable.
  return [...backends].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** FNV-1a, 32-bit. */
function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's finalizer: spreads FNV's weak low-byte differences over all 32 bits. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 x86, 32-bit. */
function murmur3_32(bytes: Uint8Array, seed: number): number {
  let h = seed >>> 0;
  const blocks = bytes.length >>> 2;
  for (let i = 0; i < blocks; i++) {
    const j = i * 4;
    let k = bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const tail = blocks * 4;
  switch (bytes.length & 3) {
    case 3:
      k ^= bytes[tail + 2] << 16;
    // falls through
    case 2:
      k ^= bytes[tail + 1] << 8;
    // falls through
    case 1:
      k ^= bytes[tail];
      k = Math.imul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h ^= k;
  }
  h ^= bytes.length;
  return fmix32(h);
}
