// `deno bench agent/lb/maglev_bench.ts`: Maglev table build time at the default size.
import { buildMaglevTable, type MaglevBackend } from "./maglev.ts";

function backends(n: number): MaglevBackend[] {
  return Array.from(
    { length: n },
    (_, i) => ({ id: i + 1, key: `10.244.${i >> 8}.${i & 255}:8080` }),
  );
}

for (const n of [1, 3, 10, 100, 1000]) {
  const list = backends(n);
  Deno.bench(`buildMaglevTable 16381 slots × ${n} backends`, () => {
    buildMaglevTable(list);
  });
}
