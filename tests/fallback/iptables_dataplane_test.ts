/**
 * The iptables Service data plane on a real kernel, inside lab node namespaces: ClusterIP TCP
 * and UDP from a Pod, NodePort from outside (Cluster and Local policy), every endpoint used,
 * removed endpoints get no new flows and their UDP conntrack entries go, ClientIP affinity,
 * incremental and restart-safe syncs, malformed input refused, clean uninstall.
 * @module
 */
import assert from "node:assert/strict";
import { createLab, type Lab, type LabHost } from "../lab/lab.ts";
import { type IptablesMode, makeBackend } from "../../agent/fallback/iptables_backend.ts";
import { IptablesDataplane } from "../../agent/fallback/iptables_dataplane.ts";
import type { Endpoint, Service, ServiceSnapshot } from "../../agent/lb/model.ts";
import { addPod, ask, CLUSTER_CIDR, routePodSubnets, startPeerEcho } from "./lab_pods.ts";

const VIP = "10.96.0.10";

function service(overrides: Partial<Service> = {}): Service {
  return {
    namespace: "default",
    name: "web",
    clusterIPs: [VIP],
    externalIPs: [],
    loadBalancerIPs: [],
    ports: [
      { name: "http", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 },
      { name: "dns", protocol: "UDP", port: 53, targetPort: 5353, nodePort: 30053 },
    ],
    sessionAffinity: "None",
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    ...overrides,
  };
}

/** A ready endpoint, or (ready = false) one that is terminating but still serving. */
function endpoint(ip: string, node: string, ready = true): Endpoint {
  return { ip, node, ready, serving: true, terminating: !ready };
}

interface World {
  lab: Lab;
  client: LabHost;
  /** Endpoint Pods: a (node 1) and b (node 2). */
  a: LabHost;
  b: LabHost;
  planes: IptablesDataplane[];
  sync(snapshot: ServiceSnapshot): Promise<void>;
}

async function world(lab: Lab, mode: IptablesMode = "legacy"): Promise<World> {
  const [n1, n2] = lab.nodes;
  const client = await addPod(lab, n1, 1);
  const a = await addPod(lab, n1, 2);
  const b = await addPod(lab, n2, 1);
  await routePodSubnets(lab);
  for (const [pod, tag] of [[a, "a"], [b, "b"]] as const) {
    await startPeerEcho(lab, pod, 8080, `${tag} `);
    await startPeerEcho(lab, pod, 5353, `${tag} `, "UDP");
  }
  const planes = lab.nodes.map((node) =>
    new IptablesDataplane(makeBackend(mode, "test", node.nsPath), {
      nodeName: node.name,
      clusterCidr: CLUSTER_CIDR,
    })
  );
  return {
    lab,
    client,
    a,
    b,
    planes,
    async sync(snapshot) {
      for (const plane of planes) await plane.sync(snapshot);
    },
  };
}

function twoEndpoints(w: World, svc: Service = service()): ServiceSnapshot {
  return {
    services: [{
      service: svc,
      endpoints: [endpoint(w.a.ip!, w.lab.nodes[0].name), endpoint(w.b.ip!, w.lab.nodes[1].name)],
    }],
  };
}

/** Asks up to `tries` times; returns the set of endpoint tags that answered. */
async function tags(
  host: LabHost,
  address: string,
  port: number,
  protocol: "TCP" | "UDP",
  tries: number,
  stopAt = 2,
): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < tries && seen.size < stopAt; i++) {
    seen.add((await ask(host, address, port, protocol)).split(" ")[0]);
  }
  return seen;
}

for (const mode of ["legacy", "nft"] as const) {
  Deno.test(`iptables (${mode}): ClusterIP TCP and UDP from a Pod reach every endpoint`, async () => {
    await using lab = await createLab({ nodes: 2, outside: false });
    const w = await world(lab, mode);
    assert.equal(await ask(w.client, VIP, 80), "", "nothing answers before the first sync");
    await w.sync(twoEndpoints(w));
    assert.deepEqual(await tags(w.client, VIP, 80, "TCP", 40), new Set(["a", "b"]));
    assert.deepEqual(await tags(w.client, VIP, 53, "UDP", 40), new Set(["a", "b"]));
    // The endpoint sees the Pod's own address: Pod to Service traffic is not masqueraded.
    const reply = await ask(w.client, VIP, 80);
    assert.match(reply, new RegExp(` ${w.client.ip!.replaceAll(".", "\\.")}$`), reply);

    for (const plane of w.planes) await plane.uninstall();
    for (const node of lab.nodes) {
      assert.doesNotMatch((await node.run([`iptables-${mode}-save`])).stdout, /SKIFF/);
    }
  });
}

Deno.test("iptables: NodePort from outside, Cluster policy masquerades and Local keeps the client", async () => {
  await using lab = await createLab({ nodes: 2 });
  const w = await world(lab);
  await w.sync(twoEndpoints(w));
  const n1 = lab.nodes[0];
  const seen = new Set<string>();
  for (let i = 0; i < 40 && seen.size < 2; i++) {
    const reply = await ask(lab.outside, n1.ip, 30080);
    const [tag, peer] = reply.split(" ");
    seen.add(tag);
    if (tag === "b") assert.match(peer, new RegExp(`^${n1.ip.replaceAll(".", "\\.")}$`), reply);
  }
  assert.deepEqual(seen, new Set(["a", "b"]));
  assert.match(await ask(lab.outside, n1.ip, 30053, "UDP"), /^[ab] /);

  await w.sync(twoEndpoints(w, service({ externalTrafficPolicy: "Local" })));
  for (let i = 0; i < 6; i++) {
    const reply = await ask(lab.outside, n1.ip, 30080);
    assert.match(reply, new RegExp(`^a ${lab.outside.ip!.replaceAll(".", "\\.")}$`), reply);
  }
  // Node 2 has no local endpoint for this policy... but b is on node 2: it answers there only.
  const n2 = lab.nodes[1];
  assert.match(await ask(lab.outside, n2.ip, 30080), /^b /);
});

Deno.test("iptables: a removed endpoint gets no new flows and its UDP conntrack entries go", async () => {
  await using lab = await createLab({ nodes: 2, outside: false });
  const w = await world(lab);
  const n1 = lab.nodes[0];
  await w.sync(twoEndpoints(w));
  // A UDP "flow" (fixed source port) pinned to b by conntrack.
  let sport = 40000;
  let first = "";
  for (; sport < 40040; sport++) {
    first = (await ask(w.client, VIP, 53, "UDP", sport)).split(" ")[0];
    if (first === "b") break;
  }
  assert.equal(first, "b");
  assert.equal((await ask(w.client, VIP, 53, "UDP", sport)).split(" ")[0], "b", "conntrack pins");
  const before = await n1.run(["conntrack", "-L", "-p", "udp", "--dst-nat", w.b.ip!]);
  assert.match(before.stdout, /dport=53/);

  const onlyA: ServiceSnapshot = {
    services: [{ service: service(), endpoints: [endpoint(w.a.ip!, n1.name)] }],
  };
  const report = await w.planes[0].sync(onlyA);
  await w.planes[1].sync(onlyA);
  assert.equal(report.changedServices, 1);
  const after = await n1.run(["conntrack", "-L", "-p", "udp", "--dst-nat", w.b.ip!], {
    allowFailure: true,
  });
  assert.doesNotMatch(after.stdout, /dport=53/, "the stale UDP entry was deleted");
  assert.equal((await ask(w.client, VIP, 53, "UDP", sport)).split(" ")[0], "a");
  assert.deepEqual(await tags(w.client, VIP, 80, "TCP", 6, 3), new Set(["a"]));

  // Terminating endpoints take new flows only when nothing is ready.
  await w.sync({
    services: [{
      service: service(),
      endpoints: [endpoint(w.a.ip!, n1.name, false), endpoint(w.b.ip!, lab.nodes[1].name)],
    }],
  });
  assert.deepEqual(await tags(w.client, VIP, 80, "TCP", 6, 3), new Set(["b"]));
  await w.sync({
    services: [{ service: service(), endpoints: [endpoint(w.a.ip!, n1.name, false)] }],
  });
  assert.deepEqual(await tags(w.client, VIP, 80, "TCP", 6, 3), new Set(["a"]));
  // No endpoint that may take flows (terminating and no longer serving) is like none at all,
  // and is rejected at once rather than left hanging.
  await w.sync({
    services: [{
      service: service(),
      endpoints: [{ ...endpoint(w.a.ip!, n1.name, false), serving: false }],
    }],
  });
  const rejected = await w.client.run(
    ["timeout", "3", "socat", "-", `TCP:${VIP}:80,connect-timeout=2`],
    { stdin: "", allowFailure: true },
  );
  assert.match(rejected.stderr, /Connection refused|No route to host/, rejected.stderr);
});

Deno.test("iptables: ClientIP affinity keeps a client on one endpoint", async () => {
  await using lab = await createLab({ nodes: 2, outside: false });
  const w = await world(lab);
  await w.sync(
    twoEndpoints(w, service({ sessionAffinity: "ClientIP", affinityTimeoutSeconds: 60 })),
  );
  const seen = await tags(w.client, VIP, 80, "TCP", 12, 3);
  assert.equal(seen.size, 1, `one endpoint, saw ${[...seen]}`);
  const recent = await lab.nodes[0].run(["sh", "-c", "cat /proc/net/xt_recent/SKIFF-SEP-*"]);
  assert.match(recent.stdout, new RegExp(`src=${w.client.ip!.replaceAll(".", "\\.")} `));
});

Deno.test("iptables: syncs are incremental, restart-safe, repair outside edits and refuse bad input", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  const backend = makeBackend("legacy", "test", node.nsPath);
  const context = { nodeName: node.name, clusterCidr: CLUSTER_CIDR };
  const plane = new IptablesDataplane(backend, context);
  const many = (n: number, eps: number): ServiceSnapshot => ({
    services: Array.from({ length: n }, (_, i) => ({
      service: service({
        name: `s${i}`,
        clusterIPs: [`10.96.1.${i + 1}`],
        ports: [service().ports[0]].map((p) => ({ ...p, nodePort: 30000 + i })),
      }),
      endpoints: Array.from({ length: eps }, (_, j) => endpoint(`10.244.5.${j + 1}`, "elsewhere")),
    })),
  });
  const first = await plane.sync(many(20, 3));
  assert.equal(first.changedServices, 20);
  const same = await plane.sync(many(20, 3));
  assert.deepEqual([same.operations, same.changedServices], [0, 0]);

  const changed = many(20, 3);
  const svc = changed.services[7];
  const oneMore = {
    services: changed.services.map((e) =>
      e === svc ? { ...e, endpoints: [...e.endpoints, endpoint("10.244.5.9", "elsewhere")] } : e
    ),
  };
  const before = (await node.run(["iptables-legacy-save", "-t", "nat"])).stdout;
  const report = await plane.sync(oneMore);
  assert.equal(report.changedServices, 1);
  const after = (await node.run(["iptables-legacy-save", "-t", "nat"])).stdout;
  const lines = (t: string) => new Set(t.split("\n").filter((l) => l.startsWith("-A")));
  const added = [...lines(after)].filter((l) => !lines(before).has(l));
  assert.ok(added.every((l) => l.includes("default/s7")), added.join("\n"));
  assert.ok(added.length >= 3 && added.length <= 6, added.join("\n"));

  // A new process (restart) reads the kernel and has nothing to do.
  const restarted = new IptablesDataplane(backend, context);
  const again = await restarted.sync(oneMore);
  assert.equal(again.operations, 0);

  // An outside flush of a Service chain and a lost jump are repaired by a refresh + sync.
  const svcChain =
    after.split("\n").find((l) =>
      l.includes("default/s7:http cluster IP") && l.startsWith("-A SKIFF-SERVICES")
    )!.split(" -j ")[1];
  await node.run(["iptables-legacy", "-t", "nat", "-F", svcChain]);
  await node.run([
    "iptables-legacy",
    "-t",
    "nat",
    "-D",
    "OUTPUT",
    "-m",
    "comment",
    "--comment",
    "skiff: Service portals",
    "-j",
    "SKIFF-SERVICES",
  ]);
  restarted.refresh();
  const repaired = await restarted.sync(oneMore);
  assert.ok(repaired.operations > 0);
  assert.equal(
    (await node.run(["iptables-legacy-save", "-t", "nat"])).stdout.split("\n").filter((l) =>
      l.startsWith("-A")
    ).sort().join("\n"),
    after.split("\n").filter((l) => l.startsWith("-A")).sort().join("\n"),
  );

  // With a verify interval of 0 every sync reads the kernel: repaired without refresh().
  const eager = new IptablesDataplane(backend, context, 0);
  assert.equal((await eager.sync(oneMore)).operations, 0);
  await node.run(["iptables-legacy", "-t", "nat", "-F", svcChain]);
  assert.ok((await eager.sync(oneMore)).operations > 0);
  assert.equal((await eager.sync(oneMore)).operations, 0);

  // Removing Services deletes their chains.
  await restarted.sync(many(3, 3));
  const fewer = (await node.run(["iptables-legacy-save", "-t", "nat"])).stdout;
  assert.equal(fewer.split("\n").filter((l) => /^:SKIFF-SVC-[A-Z2-7]{16} /.test(l)).length, 3);

  // Malformed input: refused with the field named, and nothing changes.
  const bad = many(3, 3);
  const broken = {
    services: [bad.services[0], {
      ...bad.services[1],
      service: { ...bad.services[1].service, ports: [{ ...service().ports[0], port: 70000 }] },
    }],
  };
  await assert.rejects(
    restarted.sync(broken),
    /services\[1\] \(default\/s1\)\.ports\[0\]\.port: 70000 is not a port/,
  );
  assert.equal(
    (await node.run(["iptables-legacy-save", "-t", "nat"])).stdout.split("\n").filter((l) =>
      l.startsWith("-A")
    ).join("\n"),
    fewer.split("\n").filter((l) => l.startsWith("-A")).join("\n"),
  );

  await restarted.uninstall();
  assert.doesNotMatch((await node.run(["iptables-legacy-save"])).stdout, /SKIFF/);
});

Deno.test("iptables (nft): a large first sync is staged in batches, reads back identically, shrinks and uninstalls in bulk", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  const backend = makeBackend("nft", "test", node.nsPath);
  const context = { nodeName: node.name, clusterCidr: CLUSTER_CIDR };
  const snapshot: ServiceSnapshot = {
    services: Array.from({ length: 400 }, (_, i) => ({
      service: service({
        name: `s${i}`,
        clusterIPs: [`10.96.${i >> 8}.${i & 255}`],
        ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }],
      }),
      endpoints: [endpoint(`10.244.5.${i & 255}`, "x"), endpoint(`10.244.6.${i & 255}`, "x")],
    })),
  };
  const plane = new IptablesDataplane(backend, context);
  const first = await plane.sync(snapshot);
  assert.equal(first.changedServices, 400);
  const saved = (await node.run(["iptables-nft-save", "-t", "nat"])).stdout;
  assert.equal(saved.split("\n").filter((l) => /^:SKIFF-SEP-/.test(l)).length, 800);
  const restarted = await new IptablesDataplane(backend, context).sync(snapshot);
  assert.equal(restarted.operations, 0, "the staged chains read back exactly as desired");
  // Dropping most Services: more than 1000 chains go through one `nft -f`.
  const few = { services: snapshot.services.slice(0, 10) };
  const shrink = await plane.sync(few);
  assert.equal(shrink.changedServices, 390);
  const left = (await node.run(["iptables-nft-save", "-t", "nat"])).stdout;
  assert.equal(left.split("\n").filter((l) => /^:SKIFF-SEP-/.test(l)).length, 20);
  assert.equal((await new IptablesDataplane(backend, context).sync(few)).operations, 0);
  await new IptablesDataplane(backend, context).sync(snapshot);
  // More than 1000 chains uninstalled: references in one restore, chains in one `nft -f`.
  await new IptablesDataplane(backend, context).uninstall();
  assert.doesNotMatch((await node.run(["iptables-nft-save"])).stdout, /SKIFF/);
});
