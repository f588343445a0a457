/**
 * The world the Service suites run in: a 2-node lab, Pods as namespaces (tests/fallback's
 * host-gw Pods), backend Pods running lb_peer servers, a data plane on node 1, and clients
 * (lb_peer) spawned in Pods, on a node, or outside, talking JSON lines over stdin/stdout.
 * @module
 */
import type { Dataplane } from "../../agent/dataplane.ts";
import type { Endpoint, Service, ServicePort } from "../../agent/lb/model.ts";
import { createLab, type Lab, type LabHost, type LabNode } from "../lab/lab.ts";
import { addPod, routePodSubnets } from "../fallback/lab_pods.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
// The running deno binary, not node_modules/.bin/deno: after `deno install` that is npm's Node
// wrapper, and a SIGKILL to it leaves the real deno running (orphaned, never killed).
const DENO = Deno.execPath();
const PEER = `${ROOT}tests/lb/peers/lb_peer.ts`;

/** Backend Pods listen here. */
export const TCP_PORT = 8080;
export const UDP_PORT = 5353;

/** Makes the data plane under test on a node of a lab. */
export type MakeDataplane = (lab: Lab, node: LabNode) => Promise<Dataplane>;

/** A backend Pod running the TCP and UDP servers, answering with its tag. */
export interface Backend {
  readonly tag: string;
  readonly host: LabHost;
  readonly ip: string;
  readonly node: LabNode;
}

/** A running lb_peer client. */
export class PeerClient {
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #writer: WritableStreamDefaultWriter<Uint8Array>;

  constructor(readonly child: Deno.ChildProcess) {
    this.#writer = child.stdin.getWriter();
    (async () => {
      let pending = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
          this.#lines.push(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
          this.#waiters.shift()?.();
        }
      }
    })().catch(() => {});
  }

  /** Sends one command and returns its JSON answer (throws after `timeoutMs`). */
  async cmd<T = Record<string, unknown>>(line: string, timeoutMs = 30_000): Promise<T> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
    return await this.next<T>(timeoutMs);
  }

  /** The next answer (for a command sent with `send`). */
  async next<T>(timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (Date.now() > deadline) throw new Error(`peer client gave no answer in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.#waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
    return JSON.parse(this.#lines.shift()!) as T;
  }

  /** Sends a command without waiting for its answer. */
  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }
}

/** What `many` answers. */
export interface ManyResult {
  tags: string[];
  peers: string[];
  /** TCP: the client address:port each server saw. */
  seen: string[];
  failures: number;
}

/** The Service world of one test. */
export class ServiceWorld implements AsyncDisposable {
  dataplane!: Dataplane;
  readonly backends: Backend[] = [];
  client!: LabHost;

  constructor(readonly lab: Lab, readonly makeDataplane: MakeDataplane) {}

  /** The node under test (its data plane carries the Services). */
  get node(): LabNode {
    return this.lab.nodes[0];
  }

  /** A backend by tag. */
  backend(tag: string): Backend {
    const b = this.backends.find((x) => x.tag === tag);
    if (!b) throw new Error(`no backend ${tag}`);
    return b;
  }

  /** Endpoints of the given backends (ready, not terminating). */
  endpoints(...tags: string[]): Endpoint[] {
    return tags.map((t) => {
      const b = this.backend(t);
      return { ip: b.ip, node: b.node.name, ready: true, serving: true, terminating: false };
    });
  }

  /** Starts an lb_peer client in `host` (in the node's cgroup when `cgroup`). */
  startClient(host: LabHost, target: string, port: number, cgroup = false): PeerClient {
    const child = this.lab.spawn(host, [
      DENO,
      "run",
      "-A",
      "--no-check",
      "--unstable-net",
      PEER,
      "client",
      target,
      String(port),
    ], {
      cgroup: cgroup ? this.node.cgroup : undefined,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
    return new PeerClient(child);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.dataplane?.uninstall();
    } finally {
      await this.lab.destroy();
    }
  }
}

async function waitListening(host: LabHost, flag: "-t" | "-u", port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const out = await host.run(["ss", "-Hln", flag]);
    if (out.stdout.includes(`:${port} `)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`lb_peer server on ${host.name}:${port} did not start`);
}

/**
 * Builds the world: 2 nodes, a client Pod "p" on node 1, backends b1, b2 on node 1 and b3 on
 * node 2 (TCP 8080 and UDP 5353 each), then the data plane on node 1.
 */
export async function createServiceWorld(makeDataplane: MakeDataplane): Promise<ServiceWorld> {
  const lab = await createLab({ nodes: 2 });
  const world = new ServiceWorld(lab, makeDataplane);
  try {
    const [n1, n2] = lab.nodes;
    world.client = await addPod(lab, n1, 10);
    const placements: [string, LabNode, number][] = [["b1", n1, 1], ["b2", n1, 2], ["b3", n2, 3]];
    for (const [tag, node, n] of placements) {
      const host = await addPod(lab, node, n);
      world.backends.push({ tag, host, ip: host.ip!, node });
    }
    await routePodSubnets(lab);
    for (const b of world.backends) {
      for (const [proto, port] of [["TCP", TCP_PORT], ["UDP", UDP_PORT]] as const) {
        lab.spawn(b.host, [
          DENO,
          "run",
          "-A",
          "--no-check",
          "--unstable-net",
          PEER,
          "server",
          proto,
          String(port),
          b.tag,
        ]); // piped (the lab cancels pipes at teardown); servers print nothing
      }
    }
    for (const b of world.backends) {
      await waitListening(b.host, "-t", TCP_PORT);
      await waitListening(b.host, "-u", UDP_PORT);
    }
    world.dataplane = await makeDataplane(lab, n1);
    return world;
  } catch (error) {
    await world[Symbol.asyncDispose]().catch(() => {});
    throw error;
  }
}

/** A Service with defaults (namespace default, Cluster policies, no affinity). */
export function service(
  name: string,
  fields: Partial<Service> & { ports: ServicePort[] },
): Service {
  return {
    namespace: "default",
    name,
    clusterIPs: [],
    externalIPs: [],
    loadBalancerIPs: [],
    sessionAffinity: "None",
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    ...fields,
  };
}

/** TCP port 80 → 8080 and UDP port 53 → 5353 (names "http", "dns"). */
export const WEB_PORTS: ServicePort[] = [
  { name: "http", protocol: "TCP", port: 80, targetPort: TCP_PORT },
  { name: "dns", protocol: "UDP", port: 53, targetPort: UDP_PORT },
];
