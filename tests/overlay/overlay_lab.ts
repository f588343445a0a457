/**
 * Lab helpers for overlay tests: plain veth "pods" on a node's cni0, reachability checks run
 * from inside pod namespaces only, and polling for kernel state.
 * @module
 */
import assert from "node:assert/strict";
import type { Lab, LabHost, LabNode } from "../lab/lab.ts";
import { cidrHost, formatIpv4, parseCidr } from "../../agent/net/ipv4.ts";

/** A pod: its namespace and address. */
export interface Pod {
  readonly host: LabHost;
  readonly ip: string;
  readonly node: LabNode;
}

/** Adds `count` pods to a node: veth into cni0, address from the subnet, default via .1. */
export async function addPods(
  lab: Lab,
  node: LabNode,
  subnet: string,
  count = 2,
  mtu = 1450,
): Promise<Pod[]> {
  const cidr = parseCidr(subnet);
  const pods: Pod[] = [];
  for (let k = 1; k <= count; k++) {
    const host = await lab.addHost(`n${node.index}p${k}`);
    const port = `vp${k}`;
    await lab.connect(node, port, host, "eth0");
    await node.run(["ip", "link", "set", port, "mtu", String(mtu), "master", "cni0"]);
    const ip = formatIpv4(cidrHost(cidr, 10 + k));
    await host.run(["ip", "link", "set", "eth0", "mtu", String(mtu)]);
    await host.run(["ip", "addr", "add", `${ip}/${cidr.prefix}`, "dev", "eth0"]);
    await host.run(["ip", "route", "add", "default", "via", formatIpv4(cidrHost(cidr, 1))]);
    pods.push({ host, ip, node });
  }
  return pods;
}

/** Pings `to` from `from`'s namespace; returns whether a reply came. */
export async function pings(from: Pod, to: Pod): Promise<boolean> {
  const out = await from.host.run(["ping", "-c", "1", "-W", "2", "-q", to.ip], {
    allowFailure: true,
  });
  return out.code === 0;
}

/** Asserts every pod reaches every pod on another node (ping). */
export async function assertAllPing(pods: readonly Pod[]): Promise<void> {
  const failures: string[] = [];
  await Promise.all(pods.map(async (a) => {
    for (const b of pods) {
      if (a.node === b.node) continue;
      if (!(await pings(a, b))) failures.push(`${a.ip}→${b.ip}`);
    }
  }));
  assert.deepEqual(failures, [], `pod pings failed: ${failures.join(" ")}`);
}

/** Asserts a TCP exchange from the first pod of each node to the first pod of every other. */
export async function assertTcpAcrossNodes(lab: Lab, pods: readonly Pod[]): Promise<void> {
  const firsts = pods.filter((p, i) => pods.findIndex((q) => q.node === p.node) === i);
  const servers = firsts.map((p) =>
    // stdout/stderr stay piped (socat prints nothing): the lab's teardown cancels them.
    lab.spawn(p.host, ["socat", "TCP-LISTEN:7000,reuseaddr,fork", `SYSTEM:echo pong-${p.ip}`])
  );
  try {
    for (const a of firsts) {
      for (const b of firsts) {
        if (a === b) continue;
        let answer = "";
        for (let attempt = 0; attempt < 20 && !answer.includes("pong"); attempt++) {
          const out = await a.host.run(
            ["socat", "-T", "3", "-", `TCP:${b.ip}:7000,connect-timeout=3`],
            { allowFailure: true, stdin: "" },
          );
          answer = out.stdout.trim();
          if (!answer) await new Promise((r) => setTimeout(r, 100)); // server still starting
        }
        assert.equal(answer, `pong-${b.ip}`, `TCP ${a.ip}→${b.ip}`);
      }
    }
  } finally {
    for (const s of servers) {
      try {
        s.kill("SIGKILL");
      } catch { /* gone */ }
      await s.status;
    }
  }
}

/** Polls `check` every 100 ms until it is true, or throws after `timeoutMs`. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The overlay entries a node has for peers: route dsts, neighbour IPs, FDB dsts. */
export async function peerTables(
  node: LabHost,
  device = "flannel.1",
): Promise<{ routes: string[]; neighs: string[]; fdbs: string[] }> {
  const j = async (argv: string[]) => {
    const out = await node.run(argv, { allowFailure: true });
    return out.code === 0 && out.stdout.trim() ? JSON.parse(out.stdout) : [];
  };
  const routes = await j(["ip", "-j", "route", "show", "dev", device]);
  const neighs = await j(["ip", "-j", "neigh", "show", "dev", device, "nud", "permanent"]);
  const fdbs = await j(["bridge", "-j", "fdb", "show", "dev", device]);
  return {
    routes: routes.map((r: { dst: string }) => r.dst).sort(),
    neighs: neighs.map((n: { dst: string }) => n.dst).sort(),
    fdbs: fdbs.filter((f: { dst?: string }) => f.dst).map((f: { dst: string }) => f.dst).sort(),
  };
}
