/**
 * eBPF-only Service behaviour in the lab: an agent process SIGKILLed during a connection loop
 * and restarted (no connection fails, the restart writes nothing to the maps), and a Pod
 * outside the hooked cgroup served by tc LB on its host-side device.
 */
import assert from "node:assert/strict";
import { BpfDataplane, type BpfDataplaneOptions } from "../../agent/lb/bpf_dataplane.ts";
import type { ServiceSnapshot } from "../../agent/lb/model.ts";
import { createServiceWorld, type ManyResult, service, WEB_PORTS } from "./service_world.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
// The running deno binary, not node_modules/.bin/deno: after `deno install` that is npm's Node
// wrapper, and a SIGKILL to it leaves the real deno running (orphaned, never killed).
const DENO = Deno.execPath();
const FIXTURE = `${ROOT}tests/lb/lb_agent_fixture.ts`;

function startAgent(options: BpfDataplaneOptions, snapshotFile: string) {
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", "--no-check", FIXTURE, JSON.stringify(options), snapshotFile],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const report = (async () => {
    let text = "";
    const deadline = Date.now() + 20_000;
    while (!text.includes("\n") && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    if (!text.includes("\n")) {
      throw new Error(
        `agent printed no report: ${new TextDecoder().decode((await child.output()).stderr)}`,
      );
    }
    return JSON.parse(text.split("\n")[0]) as { operations: number };
  })();
  return { child, report, reader };
}

Deno.test({
  name:
    "bpf: SIGKILL of the agent during a connection loop: no failures, the restart writes nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    let options!: BpfDataplaneOptions;
    await using world = await createServiceWorld((_lab, node) => {
      options = {
        pinDir: node.pinDir,
        cgroup: node.cgroup,
        devices: [node.uplink],
        netns: node.nsPath,
        nodeName: node.name,
        nodeIPs: [node.ip],
      };
      return BpfDataplane.install(options);
    });
    const snapshot: ServiceSnapshot = {
      services: [{
        service: service("web", { clusterIPs: ["10.96.0.10"], ports: WEB_PORTS }),
        endpoints: world.endpoints("b1", "b2", "b3"),
      }],
    };
    const file = await Deno.makeTempFile({ prefix: "sklbsnap", suffix: ".json" });
    try {
      await Deno.writeTextFile(file, JSON.stringify(snapshot));
      const first = startAgent(options, file);
      const firstReport = await first.report;
      assert.ok(firstReport.operations > 0, "the first agent writes the Service");

      const client = world.startClient(world.client, "10.96.0.10", 80, true);
      await client.send("loop 4000");
      await new Promise((r) => setTimeout(r, 800));
      first.child.kill("SIGKILL");
      await first.child.status;
      await first.reader.cancel().catch(() => {});
      await first.child.stderr.cancel().catch(() => {});

      const second = startAgent(options, file);
      try {
        const secondReport = await second.report;
        assert.equal(secondReport.operations, 0, "the restart rewrote map entries");
      } finally {
        second.child.kill("SIGKILL");
        await second.child.status;
        await second.reader.cancel().catch(() => {});
        await second.child.stderr.cancel().catch(() => {});
      }
      const loop = await client.next<{ ok: number; failed: number }>(20_000);
      assert.equal(loop.failed, 0, "connections failed around the restart");
      assert.ok(loop.ok > 10, `only ${loop.ok} connections in the loop`);
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name:
    "bpf: a Pod without socket LB reaches ClusterIP backends through tc LB on its device; uninstall removes it all",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using world = await createServiceWorld((_lab, node) =>
      BpfDataplane.install({
        pinDir: node.pinDir,
        cgroup: node.cgroup,
        devices: [node.uplink],
        podDevices: ["vp10"], // the client Pod's host side (tests/fallback/lab_pods.ts naming)
        netns: node.nsPath,
        nodeName: node.name,
        nodeIPs: [node.ip],
      })
    );
    await world.dataplane.sync({
      services: [{
        service: service("web", { clusterIPs: ["10.96.0.10"], ports: WEB_PORTS }),
        endpoints: world.endpoints("b1", "b2", "b3"),
      }],
    });
    // not in the node's cgroup: socket LB does not see these sockets
    const tcp = await world.startClient(world.client, "10.96.0.10", 80).cmd<ManyResult>(
      "many TCP 30",
    );
    assert.equal(tcp.failures, 0);
    assert.deepEqual(new Set(tcp.tags), new Set(["b1", "b2", "b3"]));
    assert.deepEqual(new Set(tcp.peers), new Set(["10.96.0.10:80"]));
    assert.ok(
      tcp.seen.every((s) => s.startsWith(`${world.client.ip}:`)),
      "no SNAT for a Pod client",
    );
    const udp = await world.startClient(world.client, "10.96.0.10", 53).cmd<ManyResult>(
      "many UDP 30",
    );
    assert.equal(udp.failures, 0);
    assert.deepEqual(new Set(udp.tags), new Set(["b1", "b2", "b3"]));
    assert.deepEqual(new Set(udp.peers), new Set(["10.96.0.10:53"]));
    const counters = (world.dataplane as BpfDataplane).counters();
    const http = counters.get("10.96.0.10:80/6");
    assert.ok(http && http.new_flows >= 30 && http.packets > 0, JSON.stringify(http));
    // without tc LB on its device the same Pod cannot reach the ClusterIP
    await (world.dataplane as BpfDataplane).detachPodDevice("vp10");
    const none = await world.startClient(world.client, "10.96.0.10", 80).cmd<ManyResult>(
      "many TCP 2",
    );
    assert.equal(none.failures, 2);

    // uninstall takes every LB link, program and map out of the pin dir, and is idempotent
    await world.dataplane.uninstall();
    await world.dataplane.uninstall();
    const left: string[] = [];
    for (const sub of ["", "/links", "/progs"]) {
      for await (const e of Deno.readDir(`${world.node.pinDir}${sub}`)) {
        if (/^(lb[_-]|tc_lb|sock_lb)/.test(e.name)) left.push(`${sub}/${e.name}`);
      }
    }
    assert.deepEqual(left, []);
    const hooked = await world.startClient(world.client, "10.96.0.10", 80, true).cmd<ManyResult>(
      "many TCP 2",
    );
    assert.equal(hooked.failures, 2, "no socket LB left on the cgroup");
  },
});
