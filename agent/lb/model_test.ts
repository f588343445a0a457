// EndpointSlice selection rules of the model: which endpoints take new flows.
import assert from "node:assert/strict";
import { type Endpoint, endpointsForNewFlows, serviceKey } from "./model.ts";

function ep(ip: string, ready: boolean, serving: boolean, terminating: boolean): Endpoint {
  return { ip, node: "n1", ready, serving, terminating };
}

const READY = ep("10.244.1.1", true, true, false);
const READY2 = ep("10.244.1.2", true, true, false);
const TERMINATING_SERVING = ep("10.244.1.3", false, true, true);
const TERMINATING_DEAD = ep("10.244.1.4", false, false, true);
const NOT_READY = ep("10.244.1.5", false, false, false);

Deno.test("endpointsForNewFlows() takes only ready endpoints when any is ready", () => {
  assert.deepEqual(
    endpointsForNewFlows([TERMINATING_SERVING, READY, NOT_READY, READY2, TERMINATING_DEAD]),
    [READY, READY2],
  );
});

Deno.test("endpointsForNewFlows() falls back to serving terminating endpoints when none is ready", () => {
  assert.deepEqual(
    endpointsForNewFlows([NOT_READY, TERMINATING_SERVING, TERMINATING_DEAD]),
    [TERMINATING_SERVING],
  );
});

Deno.test("endpointsForNewFlows() returns nothing when no endpoint serves", () => {
  assert.deepEqual(endpointsForNewFlows([NOT_READY, TERMINATING_DEAD]), []);
  assert.deepEqual(endpointsForNewFlows([]), []);
});

Deno.test("endpointsForNewFlows() never picks a ready-flagged terminating endpoint first", () => {
  // Not producible by validate.ts, but a data plane fed by another store must still not send
  // new flows to an endpoint that is going away while others are ready.
  const odd = ep("10.244.1.6", true, true, true);
  assert.deepEqual(endpointsForNewFlows([odd, READY]), [READY]);
  assert.deepEqual(endpointsForNewFlows([odd]), [odd], "serving terminating fallback");
});

Deno.test("serviceKey() is namespace/name", () => {
  assert.equal(serviceKey({ namespace: "kube-system", name: "dns" }), "kube-system/dns");
});
