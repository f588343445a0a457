/** /healthz, /readyz and /metrics over real HTTP on loopback. */
import assert from "node:assert/strict";
import { Readiness, serveHealth } from "./health.ts";
import { parseExposition, Registry } from "./metrics.ts";

Deno.test("readyz is 503 until every expected component converged, metrics parse", async () => {
  const readiness = new Readiness();
  readiness.expect("overlay");
  readiness.expect("services");
  const registry = new Registry();
  const syncs = registry.histogram("skiff_sync_duration_seconds", "Sync duration");
  const services = registry.gauge("skiff_services", "Services programmed");
  registry.onScrape(() => services.set({ dataplane: "bpf" }, 3));
  const servers = serveHealth({
    healthAddress: "127.0.0.1:0",
    metricsAddress: "127.0.0.1:0",
    readiness,
    registry,
  });
  try {
    const base = `http://127.0.0.1:${servers.healthPort}`;
    let res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    assert.deepEqual((await res.json()).pending, ["overlay", "services"]);
    readiness.converged("overlay");
    res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    await res.body?.cancel();
    readiness.converged("services");
    res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 200);
    await res.body?.cancel();

    readiness.beat("resync", 60_000);
    res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
    readiness.beat("resync", -1);
    res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 503);
    assert.deepEqual((await res.json()).staleLoops, ["resync"]);

    syncs.observe({ dataplane: "bpf" }, 0.002);
    syncs.observe({ dataplane: "bpf" }, 0.3);
    res = await fetch(`http://127.0.0.1:${servers.metricsPort}/metrics`);
    const parsed = parseExposition(await res.text());
    assert.equal(parsed.get('skiff_services{dataplane="bpf"}'), 3);
    assert.equal(parsed.get('skiff_sync_duration_seconds_count{dataplane="bpf"}'), 2);
    assert.equal(parsed.get('skiff_sync_duration_seconds_bucket{dataplane="bpf",le="0.005"}'), 1);
    assert.equal(parsed.get('skiff_sync_duration_seconds_bucket{dataplane="bpf",le="+Inf"}'), 2);
  } finally {
    await servers.close();
  }
});

Deno.test("parseExposition() rejects a malformed line", () => {
  assert.throws(() => parseExposition('skiff_x{a="b"}\n'), /not a metric line/);
});
