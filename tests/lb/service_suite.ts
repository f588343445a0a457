/**
 * The Service suite every data plane runs (bpf, iptables, ipvs): ClusterIP from Pods and host
 * processes, NodePort and externalIPs from outside with both traffic policies, backend
 * removal, ClientIP affinity, restart without disruption, and refusal of malformed Services.
 * A data plane's test file calls `defineServiceSuite("bpf", makeDataplane)`.
 * @module
 */
import assert from "node:assert/strict";
import type { ServiceSnapshot } from "../../agent/lb/model.ts";
import {
  createServiceWorld,
  type MakeDataplane,
  type ManyResult,
  service,
  type ServiceWorld,
  WEB_PORTS,
} from "./service_world.ts";

export type { MakeDataplane } from "./service_world.ts";

const CLUSTER_IP = "10.96.0.10";
const EXTERNAL_IP = "192.168.100.200";
const NODE_PORT = 30080;
const NODE_PORT_UDP = 30053;

function tagsOf(r: ManyResult): Set<string> {
  return new Set(r.tags);
}

async function withWorld(make: MakeDataplane, body: (w: ServiceWorld) => Promise<void>) {
  await using world = await createServiceWorld(make);
  await body(world);
}

/** Registers the suite's tests, named "<name>: …". */
export function defineServiceSuite(name: string, makeDataplane: MakeDataplane): void {
  const test = (title: string, body: (w: ServiceWorld) => Promise<void>) =>
    Deno.test({
      name: `${name}: ${title}`,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: () => withWorld(makeDataplane, body),
    });

  test("ClusterIP TCP and UDP from a Pod and a host process reach every backend; the peer is the VIP", async (w) => {
    await w.dataplane.sync({
      services: [{
        service: service("web", { clusterIPs: [CLUSTER_IP], ports: WEB_PORTS }),
        endpoints: w.endpoints("b1", "b2", "b3"),
      }],
    });
    for (const [what, host] of [["pod", w.client], ["host process", w.node]] as const) {
      const c80 = w.startClient(host, CLUSTER_IP, 80, true);
      const tcp = await c80.cmd<ManyResult>("many TCP 30");
      assert.equal(tcp.failures, 0, `${what}: TCP failures`);
      assert.deepEqual(tagsOf(tcp), new Set(["b1", "b2", "b3"]), `${what}: TCP backends`);
      assert.deepEqual(new Set(tcp.peers), new Set([`${CLUSTER_IP}:80`]), `${what}: TCP peer`);
      const c53 = w.startClient(host, CLUSTER_IP, 53, true);
      const udp = await c53.cmd<ManyResult>("many UDP 30");
      assert.equal(udp.failures, 0, `${what}: UDP failures`);
      assert.deepEqual(tagsOf(udp), new Set(["b1", "b2", "b3"]), `${what}: UDP backends`);
      assert.deepEqual(new Set(udp.peers), new Set([`${CLUSTER_IP}:53`]), `${what}: UDP peer`);
    }
  });

  test("NodePort and an externalIP from outside are reverse-NATed; policy Local keeps local backends", async (w) => {
    const outside = w.lab.outside;
    await outside.run(["ip", "route", "add", `${EXTERNAL_IP}/32`, "via", w.node.ip]);
    const np = (policy: "Cluster" | "Local"): ServiceSnapshot => ({
      services: [{
        service: service("np", {
          clusterIPs: ["10.96.0.20"],
          externalIPs: [EXTERNAL_IP],
          externalTrafficPolicy: policy,
          ports: [
            { name: "http", protocol: "TCP", port: 80, targetPort: 8080, nodePort: NODE_PORT },
            { name: "dns", protocol: "UDP", port: 53, targetPort: 5353, nodePort: NODE_PORT_UDP },
          ],
        }),
        endpoints: w.endpoints("b1", "b3"),
      }],
    });
    await w.dataplane.sync(np("Cluster"));
    const viaNodePort = w.startClient(outside, w.node.ip, NODE_PORT);
    const a = await viaNodePort.cmd<ManyResult>("many TCP 20");
    assert.equal(a.failures, 0, "NodePort TCP failures");
    assert.deepEqual(tagsOf(a), new Set(["b1", "b3"]), "NodePort reaches local and remote");
    assert.deepEqual(new Set(a.peers), new Set([`${w.node.ip}:${NODE_PORT}`]));
    const viaExternal = w.startClient(outside, EXTERNAL_IP, 80);
    const b = await viaExternal.cmd<ManyResult>("many TCP 20");
    assert.equal(b.failures, 0, "externalIP TCP failures");
    assert.deepEqual(tagsOf(b), new Set(["b1", "b3"]), "externalIP reaches local and remote");
    const udp = w.startClient(outside, w.node.ip, NODE_PORT_UDP);
    const u = await udp.cmd<ManyResult>("many UDP 10");
    assert.equal(u.failures, 0, "NodePort UDP failures");

    await w.dataplane.sync(np("Local"));
    const local = await viaNodePort.cmd<ManyResult>("many TCP 20");
    assert.equal(local.failures, 0, "Local NodePort failures");
    assert.deepEqual(tagsOf(local), new Set(["b1"]), "Local: only the node's own backend");
    assert.ok(
      local.seen.every((s) => s.startsWith(`${outside.ip}:`)),
      `Local keeps the client address: ${local.seen.join(",")}`,
    );
    const ext = await viaExternal.cmd<ManyResult>("many TCP 10");
    assert.deepEqual(tagsOf(ext), new Set(["b1"]), "Local externalIP: only local");
  });

  test("removing a backend: no new flows to it, established TCP finishes, UDP moves on", async (w) => {
    const snap = (tcpTags: string[], udpTags: string[]): ServiceSnapshot => ({
      services: [
        {
          service: service("web-tcp", { clusterIPs: [CLUSTER_IP], ports: [WEB_PORTS[0]] }),
          endpoints: w.endpoints(...tcpTags),
        },
        {
          service: service("web-udp", { clusterIPs: ["10.96.0.11"], ports: [WEB_PORTS[1]] }),
          endpoints: w.endpoints(...udpTags),
        },
      ],
    });
    await w.dataplane.sync(snap(["b1", "b2"], ["b1", "b2"]));
    const tcp = w.startClient(w.client, CLUSTER_IP, 80, true);
    const udp = w.startClient(w.client, "10.96.0.11", 53, true);
    assert.equal((await tcp.cmd<{ peer: string }>("open")).peer, `${CLUSTER_IP}:80`);
    const held = await tcp.cmd<{ tag: string; ok: boolean }>("send");
    assert.ok(held.ok);
    const dgram = await udp.cmd<{ tag: string; ok: boolean }>("usend");
    assert.ok(dgram.ok);
    const other = (t: string) => (t === "b1" ? "b2" : "b1");

    await w.dataplane.sync(snap([other(held.tag)], [other(dgram.tag)]));
    const again = await tcp.cmd<{ tag: string; ok: boolean }>("send");
    assert.deepEqual([again.ok, again.tag], [true, held.tag], "the established connection goes on");
    const fresh = await tcp.cmd<ManyResult>("many TCP 20");
    assert.equal(fresh.failures, 0);
    assert.deepEqual(tagsOf(fresh), new Set([other(held.tag)]), "no new flow to the removed one");
    const moved = await udp.cmd<{ tag: string; ok: boolean; from: string }>("usend");
    assert.deepEqual(
      [moved.ok, moved.tag, moved.from],
      [true, other(dgram.tag), "10.96.0.11:53"],
      "the same UDP socket now reaches a live backend",
    );
  });

  test("ClientIP affinity holds across 100 connections and expires after its timeout", async (w) => {
    await w.dataplane.sync({
      services: [{
        service: service("sticky", {
          clusterIPs: [CLUSTER_IP],
          ports: [WEB_PORTS[0]],
          sessionAffinity: "ClientIP",
          affinityTimeoutSeconds: 1,
        }),
        endpoints: w.endpoints("b1", "b2", "b3"),
      }],
    });
    const c = w.startClient(w.client, CLUSTER_IP, 80, true);
    const burst = await c.cmd<ManyResult>("many TCP 100");
    assert.equal(burst.failures, 0);
    assert.equal(tagsOf(burst).size, 1, `one backend for 100 connections: ${[...tagsOf(burst)]}`);
    // after each timeout the next connection chooses afresh; 6 rounds see a second backend
    // unless each lands on the first by chance ((1/3)^6)
    const seen = new Set(burst.tags);
    for (let round = 0; round < 6 && seen.size < 2; round++) {
      await new Promise((r) => setTimeout(r, 1600));
      const probe = await c.cmd<ManyResult>("many TCP 1");
      assert.equal(probe.failures, 0);
      probe.tags.forEach((t) => seen.add(t));
    }
    assert.ok(seen.size >= 2, "affinity must expire after its timeout");
  });

  test("a restarted data plane writes nothing for an unchanged snapshot and no connection fails", async (w) => {
    const snap: ServiceSnapshot = {
      services: [{
        service: service("web", { clusterIPs: [CLUSTER_IP], ports: WEB_PORTS }),
        endpoints: w.endpoints("b1", "b2", "b3"),
      }],
    };
    await w.dataplane.sync(snap);
    const c = w.startClient(w.client, CLUSTER_IP, 80, true);
    await c.send("loop 3000");
    await new Promise((r) => setTimeout(r, 500));
    await w.dataplane.close();
    w.dataplane = await w.makeDataplane(w.lab, w.node);
    const report = await w.dataplane.sync(snap);
    assert.equal(report.operations, 0, "the restart rewrote kernel state");
    const loop = await c.next<{ ok: number; failed: number }>(15_000);
    assert.equal(loop.failed, 0);
    assert.ok(loop.ok > 0);
  });

  test("malformed Services are refused with a clear message and change nothing", async (w) => {
    const good = service("web", { clusterIPs: [CLUSTER_IP], ports: [WEB_PORTS[0]] });
    const snap: ServiceSnapshot = {
      services: [{ service: good, endpoints: w.endpoints("b1", "b2") }],
    };
    await w.dataplane.sync(snap);
    const many = Array.from({ length: 20000 }, (_, i) => ({
      ip: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
      node: w.node.name,
      ready: true,
      serving: true,
      terminating: false,
    }));
    const bad: [string, unknown, RegExp][] = [
      ["bad IP", {
        services: [{ service: { ...good, clusterIPs: ["10.96.0.300"] }, endpoints: [] }],
      }, /10\.96\.0\.300/],
      ["port 0", {
        services: [{ service: { ...good, ports: [{ ...WEB_PORTS[0], port: 0 }] }, endpoints: [] }],
      }, /port/],
      ["port 70000", {
        services: [{
          service: { ...good, ports: [{ ...WEB_PORTS[0], port: 70000 }] },
          endpoints: [],
        }],
      }, /port/],
      ["protocol", {
        services: [{
          service: { ...good, ports: [{ ...WEB_PORTS[0], protocol: "SCTP" }] },
          endpoints: [],
        }],
      }, /protocol|SCTP/],
      ["duplicate frontend", {
        services: [
          { service: good, endpoints: [] },
          { service: { ...good, name: "web2" }, endpoints: [] },
        ],
      }, /duplicate|already/i],
      [
        "too many backends",
        { services: [{ service: good, endpoints: many }] },
        /endpoints|backends/i,
      ],
    ];
    for (const [what, input, message] of bad) {
      await assert.rejects(
        () => w.dataplane.sync(input as ServiceSnapshot),
        message,
        `${what} must be refused`,
      );
    }
    const report = await w.dataplane.sync(snap);
    assert.equal(report.operations, 0, "a refused snapshot changed kernel state");
    const c = w.startClient(w.client, CLUSTER_IP, 80, true);
    const r = await c.cmd<ManyResult>("many TCP 10");
    assert.equal(r.failures, 0);
    assert.deepEqual(tagsOf(r), new Set(["b1", "b2"]));
  });
}
