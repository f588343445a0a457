/**
 * Test helpers for the fallback suites: Pods as namespaces on a veth to their node (a /24 per
 * node, routed host-gw style between nodes), and a TCP server that answers with the peer
 * address it sees, so a test reads SNAT off the wire.
 * @module
 */
import type { Lab, LabHost, LabNode } from "../lab/lab.ts";

/** The cluster Network of these tests; node i owns 10.244.i.0/24. */
export const CLUSTER_CIDR = "10.244.0.0/16";

/** Node i's Pod subnet. */
export function podCidr(node: LabNode): string {
  return `10.244.${node.index}.0/24`;
}

/** Creates Pod `n` on a node: address 10.244.<node>.<n+1>, default route via the node. */
export async function addPod(lab: Lab, node: LabNode, n: number): Promise<LabHost> {
  const pod = await lab.addHost(`n${node.index}p${n}`);
  const ip = `10.244.${node.index}.${n + 1}`;
  const hostSide = `vp${n}`;
  await lab.connect(node, hostSide, pod, "eth0");
  await node.run(["ip", "addr", "replace", `10.244.${node.index}.1/32`, "dev", hostSide]);
  await node.run(["ip", "route", "add", `${ip}/32`, "dev", hostSide]);
  // proxy_delay=0: by default proxy ARP answers after a random delay of up to 0.8 s, which
  // made the first connection of a test race its timeout.
  await node.run([
    "sysctl",
    "-q",
    "-w",
    `net.ipv4.conf.${hostSide}.proxy_arp=1`,
    `net.ipv4.neigh.${hostSide}.proxy_delay=0`,
  ]);
  await pod.run(["ip", "addr", "add", `${ip}/32`, "dev", "eth0"]);
  await pod.run(["ip", "route", "add", `10.244.${node.index}.1`, "dev", "eth0"]);
  await pod.run(["ip", "route", "add", "default", "via", `10.244.${node.index}.1`]);
  return { ...pod, ip };
}

/** Routes every node's Pod subnet via that node's underlay address (host-gw). */
export async function routePodSubnets(lab: Lab): Promise<void> {
  for (const node of lab.nodes) {
    for (const peer of lab.nodes) {
      if (peer === node) continue;
      await node.run(["ip", "route", "replace", podCidr(peer), "via", peer.ip]);
    }
  }
}

const UDP_ECHO = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto((sys.argv[2] + peer[0] + "\\n").encode(), peer)
`;

/**
 * Starts a TCP (or UDP) server on `port` in `host` that writes the peer address it sees (and an
 * optional tag) and closes. Resolves once it accepts connections.
 */
export async function startPeerEcho(
  lab: Lab,
  host: LabHost,
  port: number,
  tag = "",
  protocol: "TCP" | "UDP" = "TCP",
): Promise<void> {
  // socat's UDP-RECVFROM,fork loses datagrams now and then (a race between its processes);
  // a one-socket Python loop answers every one.
  const argv = protocol === "TCP"
    ? ["socat", `TCP-LISTEN:${port},reuseaddr,fork`, `SYSTEM:echo ${tag}$SOCAT_PEERADDR`]
    : ["python3", "-c", UDP_ECHO, String(port), tag];
  // Piped (the default): the lab's teardown cancels the pipes.
  lab.spawn(host, argv);
  for (let i = 0; i < 100; i++) {
    const out = await host.run(["ss", "-Hln", protocol === "TCP" ? "-t" : "-u"]);
    if (out.stdout.includes(`:${port} `)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`echo server on ${host.name}:${port} did not start`);
}

/** Connects from `host` and returns what the server wrote (trimmed), or "" on failure. */
export async function ask(
  host: LabHost,
  address: string,
  port: number,
  protocol: "TCP" | "UDP" = "TCP",
  sourcePort?: number,
): Promise<string> {
  const bind = sourcePort === undefined ? "" : `,bind=:${sourcePort},reuseaddr`;
  const target = protocol === "TCP"
    ? `TCP:${address}:${port},connect-timeout=2${bind}`
    : `UDP:${address}:${port}${bind}`;
  const out = await host.run(["timeout", "4", "socat", "-t", "2", "-T", "2", "-", target], {
    // TCP sends nothing: the server closes without reading, and unread data would turn its
    // FIN into a RST that can destroy the reply before the client reads it.
    stdin: protocol === "TCP" ? "" : "hi\n",
    allowFailure: true,
  });
  return out.stdout.trim();
}
