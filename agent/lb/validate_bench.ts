// `deno bench agent/lb/validate_bench.ts`: validating a 10k-Service × 10-endpoint snapshot.
import { parseSnapshot } from "./validate.ts";

const human = {
  services: Array.from({ length: 10_000 }, (_, i) => ({
    namespace: "default",
    name: `s${i}`,
    clusterIP: `10.96.${i >> 8}.${i & 255}`,
    ports: [{ port: 80, targetPort: 8080 }],
    endpoints: Array.from({ length: 10 }, (_, j) => ({
      ip: `10.${j + 1}.${i >> 8}.${i & 255}`,
      node: `n${j % 3}`,
    })),
  })),
};
const model = parseSnapshot(human);

Deno.bench("parseSnapshot 10k Services × 10 endpoints, human JSON shape", () => {
  parseSnapshot(human);
});

Deno.bench("parseSnapshot 10k Services × 10 endpoints, model shape (a data plane's input)", () => {
  parseSnapshot(model);
});
