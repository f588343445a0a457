/** The pure LB map plan: frontends per Service and node, stable ids, minimal and ordered diffs. */
import assert from "node:assert/strict";
import type { Endpoint, Service, ServiceSnapshot } from "./model.ts";
import {
  applyDiffToState,
  diffLb,
  diffOperations,
  type LbState,
  makeLbState,
  planLb,
} from "./map_plan.ts";
import { BackendFlag, SvcFlag } from "./lb_abi.ts";

const M = 251; // a small prime keeps these tests quick
const NODE = { nodeName: "n1", nodeIPs: ["192.168.100.11"], maglevSize: M };

function service(overrides: Partial<Service> = {}): Service {
  return {
    namespace: "default",
    name: "web",
    clusterIPs: ["10.96.0.10"],
    externalIPs: [],
    loadBalancerIPs: [],
    ports: [{ name: "", protocol: "TCP", port: 80, targetPort: 8080 }],
    sessionAffinity: "None",
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    ...overrides,
  };
}

function ep(ip: string, node = "n1", more: Partial<Endpoint> = {}): Endpoint {
  return { ip, node, ready: true, serving: true, terminating: false, ...more };
}

const EMPTY: LbState = makeLbState({});

Deno.test("planLb() makes ClusterIP, external and per-node-address NodePort frontends", () => {
  const snap: ServiceSnapshot = {
    services: [{
      service: service({
        externalIPs: ["192.168.100.200"],
        ports: [{ name: "", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 }],
        externalTrafficPolicy: "Local",
        sessionAffinity: "ClientIP",
        affinityTimeoutSeconds: 5,
      }),
      endpoints: [ep("10.244.1.5"), ep("10.244.2.5", "n2")],
    }],
  };
  const plan = planLb(snap, NODE);
  const cip = plan.frontends.get("10.96.0.10:80/6")!;
  assert.equal(cip.flags, SvcFlag.CLUSTERIP | SvcFlag.AFFINITY);
  assert.equal(cip.affinityTimeout, 5);
  assert.deepEqual(cip.backends, ["10.244.1.5:8080/6", "10.244.2.5:8080/6"]);
  const ext = plan.frontends.get("192.168.100.200:80/6")!;
  assert.equal(ext.flags, SvcFlag.EXTERNAL | SvcFlag.LOCAL | SvcFlag.AFFINITY);
  assert.deepEqual(ext.backends, ["10.244.1.5:8080/6"], "Local keeps only this node's endpoints");
  const np = plan.frontends.get("192.168.100.11:30080/6")!;
  assert.equal(np.flags & SvcFlag.NODEPORT, SvcFlag.NODEPORT);
  assert.equal(plan.backends.get("10.244.1.5:8080/6")!.value.flags, BackendFlag.LOCAL);
  assert.equal(plan.backends.get("10.244.2.5:8080/6")!.value.flags, 0);
});

Deno.test("planLb() keeps terminating endpoints out of new flows unless none is ready", () => {
  const plan = planLb({
    services: [{
      service: service(),
      endpoints: [ep("10.244.1.5"), ep("10.244.1.6", "n1", { ready: false, terminating: true })],
    }],
  }, NODE);
  assert.deepEqual(plan.frontends.get("10.96.0.10:80/6")!.backends, ["10.244.1.5:8080/6"]);
  assert.equal(
    plan.backends.get("10.244.1.6:8080/6")!.value.flags,
    BackendFlag.TERMINATING | BackendFlag.LOCAL,
  );
  const onlyTerminating = planLb({
    services: [{
      service: service(),
      endpoints: [ep("10.244.1.6", "n1", { ready: false, terminating: true })],
    }],
  }, NODE);
  assert.deepEqual(onlyTerminating.frontends.get("10.96.0.10:80/6")!.backends, [
    "10.244.1.6:8080/6",
  ]);
});

Deno.test("diffLb() writes everything once, then nothing; ids survive and are not reused at once", () => {
  const snap: ServiceSnapshot = {
    services: [{ service: service(), endpoints: [ep("10.244.1.5"), ep("10.244.1.6")] }],
  };
  const first = diffLb(planLb(snap, NODE), EMPTY, M);
  assert.equal(first.backendUpserts.length, 2);
  assert.equal(first.maglevUpserts.length, 1);
  // slots come before the frontend (make before break)
  assert.deepEqual(first.serviceUpserts.map(([k]) => k.slot), [1, 2, 0]);
  const s1 = applyDiffToState(EMPTY, first);
  const again = diffLb(planLb(snap, NODE), s1, M);
  assert.equal(diffOperations(again), 0, "a converged state needs no writes");

  // replace .6 by .7: .7 gets a new id, not .6's freed one; .5 keeps its id
  const idOf = (s: LbState, ip: string) => [...s.backends].find(([, v]) => v.addr === ip)?.[0];
  const snap2: ServiceSnapshot = {
    services: [{ service: service(), endpoints: [ep("10.244.1.5"), ep("10.244.1.7")] }],
  };
  const d2 = diffLb(planLb(snap2, NODE), s1, M);
  const s2 = applyDiffToState(s1, d2);
  assert.equal(idOf(s2, "10.244.1.5"), idOf(s1, "10.244.1.5"));
  assert.notEqual(idOf(s2, "10.244.1.7"), idOf(s1, "10.244.1.6"));
  assert.deepEqual(d2.backendDeletes, [idOf(s1, "10.244.1.6")]);
  assert.equal(d2.maglevUpserts.length, 1);
  assert.equal(diffOperations(diffLb(planLb(snap2, NODE), s2, M)), 0);

  // removing the Service deletes the frontend before its slots
  const d3 = diffLb(planLb({ services: [] }, NODE), s2, M);
  assert.equal(d3.serviceDeletes[0].slot, 0);
  const s3 = applyDiffToState(s2, d3);
  assert.equal(s3.services.size + s3.backends.size + s3.revNat.size + s3.maglevIds.size, 0);
});

Deno.test("diffLb() recomputes only the Maglev tables whose backends changed", () => {
  const many: ServiceSnapshot = {
    services: Array.from({ length: 20 }, (_, i) => ({
      service: service({ name: `s${i}`, clusterIPs: [`10.96.1.${i + 1}`] }),
      endpoints: [ep(`10.244.1.${i + 10}`), ep(`10.244.2.${i + 10}`, "n2")],
    })),
  };
  const s1 = applyDiffToState(EMPTY, diffLb(planLb(many, NODE), EMPTY, M));
  const changed: ServiceSnapshot = {
    services: many.services.map((e, i) =>
      i === 7 ? { ...e, endpoints: [...e.endpoints, ep("10.244.3.1", "n3")] } : e
    ),
  };
  const d = diffLb(planLb(changed, NODE), s1, M);
  assert.equal(d.maglevUpserts.length, 1);
  assert.deepEqual([...d.changedServices], ["default/s7"]);
  assert.equal(d.backendUpserts.length, 1);
});

Deno.test("diffLb() refuses a frontend with more backends than a Maglev table holds", () => {
  const snap: ServiceSnapshot = {
    services: [{
      service: service(),
      endpoints: Array.from({ length: 7 }, (_, i) => ep(`10.244.1.${i + 1}`)),
    }],
  };
  assert.throws(() => diffLb(planLb(snap, NODE), EMPTY, 7), /7 backends, a Maglev table of 7/);
  assert.throws(() => diffLb(planLb(snap, NODE), EMPTY, 9), /9 is not a prime/);
  assert.equal(diffLb(planLb(snap, NODE), EMPTY, 11).maglevUpserts.length, 1);
});
