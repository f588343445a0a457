/** ServiceComponent: the daemon glue between the services file and a data plane. */
import assert from "node:assert/strict";
import type { Dataplane, SyncReport } from "../dataplane.ts";
import type { ServiceSnapshot } from "./model.ts";
import { ServiceComponent } from "./service_component.ts";
import { putServices } from "./service_file.ts";
import { parseServiceEntry } from "./validate.ts";

/** A fake data plane (names what it saw); the real ones have their own lab suites. */
class RecordingDataplane implements Dataplane {
  readonly kind = "bpf" as const;
  seen: ServiceSnapshot[] = [];
  closed = false;
  sync(snapshot: ServiceSnapshot): Promise<SyncReport> {
    this.seen.push(snapshot);
    return Promise.resolve({ durationMs: 1, operations: 3, changedServices: 1 });
  }
  uninstall(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

Deno.test("ServiceComponent syncs the file's Services and triggers when the file changes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sksvc" });
  const file = `${dir}/services.json`;
  const dp = new RecordingDataplane();
  const component = new ServiceComponent(dp, file);
  try {
    const empty = await component.sync();
    assert.equal(dp.seen[0].services.length, 0);
    assert.equal(empty.operations, 3);
    let triggered = 0;
    component.watch(() => triggered++);
    await putServices(file, [parseServiceEntry({
      name: "web",
      clusterIP: "10.96.0.10",
      ports: [{ port: 80 }],
      endpoints: [{ ip: "10.244.1.5", node: "n1" }],
    })]);
    for (let i = 0; i < 100 && triggered === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(triggered > 0, "a changed file triggers a sync");
    await component.sync();
    assert.equal(dp.seen[1].services[0].service.name, "web");
  } finally {
    await component.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(dp.closed);
});
