// Maglev table properties: balance, bounded disruption, determinism, order independence.
import assert from "node:assert/strict";
import {
  buildMaglevTable,
  DEFAULT_MAGLEV_TABLE_SIZE,
  isPrime,
  type MaglevBackend,
  maglevTableMatches,
} from "./maglev.ts";

function backends(n: number, firstId = 1): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({
    id: firstId + i,
    key: `10.244.${i >> 8}.${i & 255}:8080`,
  }));
}

function counts(table: Uint32Array): Map<number, number> {
  const c = new Map<number, number>();
  for (const id of table) c.set(id, (c.get(id) ?? 0) + 1);
  return c;
}

function movedFraction(a: Uint32Array, b: Uint32Array): number {
  let moved = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) moved++;
  return moved / a.length;
}

Deno.test("isPrime() recognises primes and refuses non-integers", () => {
  const primes = [2, 3, 5, 7, 11, 13, 251, 16381, 65537, 131071];
  for (const p of primes) assert.equal(isPrime(p), true, `${p}`);
  for (const n of [-7, 0, 1, 4, 9, 15, 25, 49, 16383, 65535, 2.5, NaN, Infinity]) {
    assert.equal(isPrime(n), false, `${n}`);
  }
  // Agrees with a sieve on 0..2000.
  const sieve = new Array(2001).fill(true);
  sieve[0] = sieve[1] = false;
  for (let i = 2; i * i <= 2000; i++) {
    if (sieve[i]) { for (let j = i * i; j <= 2000; j += i) sieve[j] = false; }
  }
  for (let n = 0; n <= 2000; n++) assert.equal(isPrime(n), sieve[n], `${n}`);
});

Deno.test("buildMaglevTable() refuses a size that is not prime or not above the backend count", () => {
  assert.throws(() => buildMaglevTable(backends(3), 16383), RangeError);
  assert.throws(() => buildMaglevTable(backends(3), 1), RangeError);
  assert.throws(() => buildMaglevTable(backends(7), 7), /greater than the number of backends/);
  assert.equal(buildMaglevTable(backends(6), 7).length, 7);
});

Deno.test("buildMaglevTable() refuses duplicate keys or ids and bad weights", () => {
  assert.throws(
    () => buildMaglevTable([{ id: 1, key: "a" }, { id: 2, key: "a" }]),
    /key "a" appears twice/,
  );
  assert.throws(
    () => buildMaglevTable([{ id: 1, key: "a" }, { id: 1, key: "b" }]),
    /id 1 appears twice/,
  );
  assert.throws(() => buildMaglevTable([{ id: -1, key: "a" }]), /not a 32-bit unsigned/);
  assert.throws(() => buildMaglevTable([{ id: 1, key: "a", weight: 1.5 }]), /weight 1.5/);
  assert.throws(() => buildMaglevTable([{ id: 1, key: "a", weight: 0 }]), /all have weight 0/);
});

Deno.test("buildMaglevTable() returns an empty table for no backends and fills it for one", () => {
  assert.equal(buildMaglevTable([]).length, 0);
  const one = buildMaglevTable([{ id: 42, key: "10.244.1.5:80" }]);
  assert.equal(one.length, DEFAULT_MAGLEV_TABLE_SIZE);
  assert.ok(one.every((id) => id === 42));
});

Deno.test("buildMaglevTable() gives every backend ⌊M/N⌋ or ⌈M/N⌉ slots", () => {
  for (const n of [2, 3, 10, 100, 1000]) {
    const table = buildMaglevTable(backends(n));
    const c = counts(table);
    assert.equal(c.size, n, `N=${n}: every backend has slots`);
    const lo = Math.floor(table.length / n);
    for (const [id, k] of c) {
      assert.ok(
        k === lo || k === lo + 1,
        `N=${n}: backend ${id} has ${k} slots, want ${lo}..${lo + 1}`,
      );
    }
  }
});

Deno.test("buildMaglevTable() is deterministic and independent of input order", () => {
  const list = backends(50);
  const a = buildMaglevTable(list);
  assert.deepEqual(buildMaglevTable(list), a);
  const shuffled = [...list].sort((x, y) => ((x.id * 7919) % 101) - ((y.id * 7919) % 101));
  assert.notDeepEqual(shuffled, list);
  assert.deepEqual(buildMaglevTable(shuffled), a);
  assert.deepEqual(buildMaglevTable([...list].reverse()), a);
  // Pinned: every node (and every agent version) must compute the same table, so a change
  // of hash or fill order must be deliberate.
  assert.deepEqual([...buildMaglevTable(backends(3), 13)], PINNED_3_OF_13);
});

// Computed once from this implementation (FNV-1a+fmix32 offset, murmur3 skip).
const PINNED_3_OF_13 = [2, 3, 2, 1, 3, 3, 1, 3, 1, 2, 1, 2, 1];

Deno.test("buildMaglevTable() slots follow the backend key, not the id", () => {
  const a = buildMaglevTable(backends(10, 1));
  const b = buildMaglevTable(backends(10, 101));
  for (let i = 0; i < a.length; i++) assert.equal(b[i], a[i] + 100);
});

/** Worst fraction × N of slots that change when one of `n` backends goes (a few tries). */
function worstRemoval(n: number, size: number): number {
  const list = backends(n);
  const before = buildMaglevTable(list, size);
  let worst = 0;
  for (let t = 0; t < Math.min(n, 5); t++) {
    const gone = list[(t * 37) % n];
    const after = buildMaglevTable(list.filter((b) => b !== gone), size);
    assert.ok(!after.includes(gone.id), "the removed backend has no slot left");
    const moved = movedFraction(before, after);
    assert.ok(moved >= (1 / n) * 0.99, `N=${n}: at least the removed backend's share moves`);
    worst = Math.max(worst, moved * n);
  }
  return worst;
}

Deno.test("buildMaglevTable() moves at most 1.5/N of slots when one of N backends goes", () => {
  for (const n of [3, 10]) {
    const w = worstRemoval(n, DEFAULT_MAGLEV_TABLE_SIZE);
    assert.ok(w <= 1.5, `N=${n}: ${w.toFixed(3)}/N of slots moved`);
  }
  // Maglev's excess disruption grows with N/M: N=100 needs a table of ≈ 1300·N for 1.5/N.
  const big = worstRemoval(100, 131071);
  assert.ok(big <= 1.5, `N=100, 131071 slots: ${big.toFixed(3)}/N of slots moved`);
});

Deno.test("buildMaglevTable() at the default size moves ≈ 2.4/N for N=100 (Maglev's known excess)", () => {
  // Measured 2.35–2.48/N (M/N is only 163); this guards against a regression, not a goal.
  const w = worstRemoval(100, DEFAULT_MAGLEV_TABLE_SIZE);
  assert.ok(w <= 2.6, `N=100: ${w.toFixed(3)}/N of slots moved`);
});

Deno.test("buildMaglevTable() adding a backend moves at most 1.5/N of slots", () => {
  const list = backends(11);
  const before = buildMaglevTable(list.slice(0, 10));
  const after = buildMaglevTable(list);
  const moved = movedFraction(before, after);
  assert.ok(moved <= 1.5 / 11, `${(moved * 11).toFixed(3)}/N moved`);
  assert.ok(moved >= (1 / 11) * 0.99);
});

Deno.test("buildMaglevTable() shares slots in proportion to weights", () => {
  const table = buildMaglevTable([
    { id: 1, key: "a", weight: 1 },
    { id: 2, key: "b", weight: 2 },
    { id: 3, key: "c", weight: 5 },
    { id: 4, key: "d", weight: 0 },
  ]);
  const c = counts(table);
  assert.equal(c.get(4), undefined, "weight 0 takes no slots");
  const m = table.length;
  for (const [id, w] of [[1, 1], [2, 2], [3, 5]]) {
    const want = (m * w) / 8;
    assert.ok(
      Math.abs(c.get(id)! - want) <= 2,
      `backend ${id}: ${c.get(id)} slots, want ≈ ${want}`,
    );
  }
});

Deno.test("buildMaglevTable() into a reused buffer gives the same tables as fresh ones", () => {
  const into = new Uint32Array(251);
  for (const n of [1, 3, 10, 40]) {
    const fresh = buildMaglevTable(backends(n), 251);
    assert.equal(buildMaglevTable(backends(n), 251, into), into);
    assert.deepEqual(into, fresh, `${n} backends`);
  }
  assert.throws(() => buildMaglevTable(backends(3), 257, into), /251 slots, not 257/);
});

Deno.test("maglevTableMatches() accepts the built table and refuses other ones", () => {
  const list = backends(10);
  const table = buildMaglevTable(list, 251);
  assert.equal(maglevTableMatches(table, list), true);
  assert.equal(maglevTableMatches(table, [...list].reverse()), true, "order does not matter");
  // the table of another backend set (one more, one less, one replaced)
  assert.equal(maglevTableMatches(buildMaglevTable(backends(11), 251), list), false);
  assert.equal(maglevTableMatches(buildMaglevTable(backends(9), 251), list), false);
  const replaced = [...list.slice(1), { id: 99, key: "10.250.0.1:8080" }];
  assert.equal(maglevTableMatches(buildMaglevTable(replaced, 251), list), false);
  // same ids, other keys (other permutations), same shares: the first round tells
  const rekeyed = list.map((b) => ({ id: b.id, key: `x${b.key}` }));
  assert.equal(maglevTableMatches(buildMaglevTable(rekeyed, 251), list), false);
  // two of a backend's slots given to another, an all-zero table, a foreign id
  const skewed = table.slice();
  skewed[skewed.indexOf(1)] = 2;
  skewed[skewed.indexOf(1)] = 2;
  assert.equal(maglevTableMatches(skewed, list), false);
  assert.equal(maglevTableMatches(new Uint32Array(251), list), false);
  const foreign = table.slice();
  foreign[7] = 12345;
  assert.equal(maglevTableMatches(foreign, list), false);
  // weights other than 1 are not checked: the answer is "rebuild"
  assert.equal(maglevTableMatches(table, list.map((b) => ({ ...b, weight: 2 }))), false);
  // no backends: only an all-zero table matches
  assert.equal(maglevTableMatches(new Uint32Array(251), []), true);
  assert.equal(maglevTableMatches(table, []), false);
});
