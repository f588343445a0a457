/** The run loop: order, readiness after the first full convergence, retries, triggers, stop. */
import assert from "node:assert/strict";
import { type Component, Daemon } from "./daemon.ts";
import { Readiness } from "./health.ts";
import { silentLogger } from "./log.ts";
import { Registry } from "./metrics.ts";

function component(name: string, calls: string[], failures = 0): Component & { fire?: () => void } {
  let left = failures;
  const c: Component & { fire?: () => void } = {
    name,
    sync: () => {
      calls.push(name);
      if (left-- > 0) return Promise.reject(new Error(`${name} not yet`));
      return Promise.resolve({ operations: 1 });
    },
    watch: (trigger) => {
      c.fire = trigger;
    },
    close: () => {
      calls.push(`close ${name}`);
      return Promise.resolve();
    },
  };
  return c;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("Daemon is ready only after every component converged, retrying failures", async () => {
  const calls: string[] = [];
  const readiness = new Readiness();
  const registry = new Registry();
  const overlay = component("overlay", calls);
  const services = component("services", calls, 1);
  const daemon = new Daemon([overlay, services], {
    log: silentLogger,
    registry,
    readiness,
    resyncSeconds: 3600,
  });
  await daemon.start();
  assert.deepEqual(calls, ["overlay", "services"]);
  assert.equal(readiness.ready, false);
  assert.deepEqual(readiness.pending, ["services"]);
  await until(() => readiness.ready);
  assert.deepEqual(calls, ["overlay", "services", "services"]);

  overlay.fire!();
  await until(() => calls.length === 4);
  assert.equal(calls[3], "overlay");

  const metrics = await registry.render();
  assert.match(metrics, /skiff_sync_errors_total\{component="services"\} 1/);
  assert.match(metrics, /skiff_sync_duration_seconds_count\{component="overlay"\} 2/);

  await daemon.stop();
  assert.deepEqual(calls.slice(-2), ["close services", "close overlay"]);
});
