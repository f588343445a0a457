// `deno bench agent/lb/maglev_bench.ts`: Maglev table build time at the default size.
import { buildMaglevTable, type MaglevBackend } from "./maglev.ts";

function backends(n: number): MaglevBackend[] {
  return Array.from(
    { length: n },
    (_, i) => ({ id: i + 1, key: `10.244.${i >> 8}.${i & 255}:8080` }),
  );
}

const into = new Uint32Array(16381);
for (const n of [1, 3, 10, 100, 1000]) {
  const list = backends(n);
  Deno.bench(`buildMaglevTable 16381 slots × ${n} backends`, () => {
    buildMaglevTable(list);
  });
  // as the reconciler writes tables: one reused output buffer
  Deno.bench(`buildMaglevTable 16381 slots × ${n} backends, into a reused buffer`, () => {
    buildMaglevTable(list, 16381, into);
  });
}
