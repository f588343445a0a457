/**
 * Removing a backend destroys the CONNECTED UDP sockets that socket LB pointed at it (the
 * stale-UDP blackhole): the application gets an error, reconnects through the VIP and reaches
 * a live backend. Unconnected UDP sockets and established TCP connections are left alone.
 */
import assert from "node:assert/strict";
import { BpfDataplane, type BpfSyncReport } from "../../agent/lb/bpf_dataplane.ts";
import type { ServiceSnapshot } from "../../agent/lb/model.ts";
import { parseSnapshot } from "../../agent/lb/validate.ts";
import { dumpPinnedMap } from "../fixtures/fixtures.ts";
import { createServiceWorld, PeerClient, service, WEB_PORTS } from "./service_world.ts";

const PY_CLIENT = new URL("./peers/udp_connected.py", import.meta.url).pathname;

interface UdpEvent {
  sock?: "c" | "u";
  event: "reply" | "timeout" | "error" | "reconnected" | "done";
  tag?: string;
  errno?: string;
}

Deno.test({
  name:
    "bpf: removing a backend destroys connected UDP sockets to it (reconnect reaches a live one); TCP to it finishes",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using world = await createServiceWorld((_lab, node) =>
      BpfDataplane.install({
        pinDir: node.pinDir,
        cgroup: node.cgroup,
        netns: node.nsPath,
        nodeName: node.name,
        nodeIPs: [node.ip],
      })
    );
    const dataplane = world.dataplane as BpfDataplane;
    const snapshot = (...tags: string[]): ServiceSnapshot => ({
      services: [{
        service: service("web", { clusterIPs: ["10.96.0.10"], ports: WEB_PORTS }),
        endpoints: world.endpoints(...tags),
      }],
    });
    await dataplane.sync(snapshot("b1"));

    // a hooked Pod process: a connected and an unconnected UDP socket to the VIP, ~10 Hz
    const udp = new PeerClient(
      world.lab.spawn(world.client, ["/usr/bin/python3", PY_CLIENT, "10.96.0.10", "53", "20"], {
        cgroup: world.node.cgroup,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }),
    );
    const events: UdpEvent[] = [];
    const until = async (done: (e: UdpEvent) => boolean, what: string): Promise<void> => {
      for (;;) {
        const e = await udp.next<UdpEvent>(5_000).catch((error) => {
          throw new Error(`${what}: ${error.message}; events: ${JSON.stringify(events)}`);
        });
        events.push(e);
        if (e.event === "done") {
          throw new Error(`${what}: the client ended; ${JSON.stringify(events)}`);
        }
        if (done(e)) return;
      }
    };
    let replies = 0;
    await until((e) => e.sock === "c" && e.event === "reply" && ++replies === 3, "first replies");
    assert.ok(
      events.filter((e) => e.event === "reply").every((e) => e.tag === "b1"),
      JSON.stringify(events),
    );

    // an established TCP connection to b1 through the VIP
    const tcp = world.startClient(world.client, "10.96.0.10", 80, true);
    await tcp.cmd("open");
    assert.deepEqual(await tcp.cmd("send"), { tag: "b1", ok: true });

    // Without the purge (the reconciler alone), b1 leaving the Service does not move the
    // connected socket: connect4 ran once, so it keeps getting b1 (a blackhole once b1's Pod
    // is gone), while the unconnected one moves.
    const stale = dataplane.reconciler.sync(parseSnapshot(snapshot("b2", "b3")));
    assert.equal(stale.removedBackends.length, 2, "b1's TCP and UDP backends leave the maps");
    const staleFrom = events.length;
    replies = 0;
    await until((e) => e.sock === "c" && e.event === "reply" && ++replies === 5, "stale replies");
    await until((e) => e.sock === "u" && e.event === "reply" && e.tag !== "b1", "u moves");
    const staleC = events.slice(staleFrom).filter((e) => e.sock === "c");
    assert.ok(staleC.every((e) => e.event === "reply" && e.tag === "b1"), JSON.stringify(staleC));
    await dataplane.sync(snapshot("b1")); // back to b1 alone; the socket never moved
    assert.deepEqual(await tcp.cmd("send"), { tag: "b1", ok: true });

    // b1 leaves the Service through the data plane (its Pod still answers: a kept socket
    // would keep getting b1)
    await dataplane.sync(snapshot("b2", "b3"));
    const report = dataplane.lastReport as BpfSyncReport;
    assert.ok(report.udpSockets, "the sync ran the UDP socket purge");
    const b1 = world.backend("b1").ip;
    assert.deepEqual(report.udpSockets.errors, []);
    assert.deepEqual(
      await dumpPinnedMap(`${world.node.pinDir}/lb_sock_purge`),
      [],
      "the purge map is cleared after the run",
    );
    assert.equal(report.udpSockets.namespaces, 1, "the client Pod's netns (both clients in it)");
    assert.equal(report.udpSockets.destroyed.length, 1, JSON.stringify(report.udpSockets));
    assert.match(report.udpSockets.destroyed[0], new RegExp(` ${b1.replaceAll(".", "\\.")}:5353$`));

    const from = events.length;
    await until((e) => e.sock === "c" && e.event === "error", "an error on the connected socket");
    const error = events[events.length - 1];
    assert.ok(
      ["ECONNABORTED", "EDESTADDRREQ"].includes(error.errno!),
      `unexpected errno ${error.errno}`,
    );
    const errorAt = events.length;
    replies = 0;
    await until(
      (e) => e.sock === "c" && e.event === "reply" && ++replies === 3,
      "replies after reconnect",
    );
    const after = events.slice(errorAt).filter((e) => e.sock === "c" && e.event === "reply");
    assert.ok(after.every((e) => e.tag === "b2" || e.tag === "b3"), JSON.stringify(after));
    assert.ok(events.slice(errorAt).some((e) => e.event === "reconnected"));
    // the unconnected socket never erred: sendmsg4 moved it to a live backend by itself
    const unconnected = events.slice(from).filter((e) => e.sock === "u");
    assert.ok(!unconnected.some((e) => e.event === "error"), JSON.stringify(unconnected));
    assert.ok(
      unconnected.some((e) => e.tag === "b2" || e.tag === "b3"),
      JSON.stringify(unconnected),
    );

    // the TCP connection to the removed backend was not destroyed: it finishes its work
    assert.deepEqual(await tcp.cmd("send"), { tag: "b1", ok: true });

    // a sync that removes no UDP backend runs no purge
    await dataplane.sync(snapshot("b2", "b3"));
    assert.equal((dataplane.lastReport as BpfSyncReport).udpSockets, undefined);
  },
});
