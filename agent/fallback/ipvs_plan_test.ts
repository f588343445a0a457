/** Pure tests of the IPVS plan: the exact ip / ipset / ipvsadm lines for each change. */
import assert from "node:assert/strict";
import type { Endpoint, Service, ServiceSnapshot } from "../lb/model.ts";
import {
  desiredIpvsState,
  EMPTY_IPVS_STATE,
  ipvsChains,
  isOurVirtualServer,
  parseAddresses,
  parseIpsetSave,
  parseIpvsadmSave,
  planIpvs,
} from "./ipvs_plan.ts";
import { renderRule } from "./iptables_text.ts";

const ctx = { nodeName: "n1", nodeAddresses: ["192.168.100.11"], clusterCidr: "10.244.0.0/16" };

function svc(overrides: Partial<Service> = {}): Service {
  return {
    namespace: "ns",
    name: "web",
    clusterIPs: ["10.96.0.10"],
    externalIPs: [],
    loadBalancerIPs: [],
    ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }],
    sessionAffinity: "None",
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    ...overrides,
  };
}

const ep = (ip: string, node = "n2"): Endpoint => ({
  ip,
  node,
  ready: true,
  serving: true,
  terminating: false,
});

function snap(service: Service, endpoints: Endpoint[]): ServiceSnapshot {
  return { services: [{ service, endpoints }] };
}

Deno.test("planIpvs() adds a Service: device, address, ipsets, virtual and real servers", () => {
  const plan = planIpvs(
    EMPTY_IPVS_STATE,
    desiredIpvsState(snap(svc(), [ep("10.244.2.5"), ep("10.244.1.5")]), ctx),
  );
  assert.deepEqual(plan.ip, [
    "link add skiff-ipvs0 type dummy",
    "link set skiff-ipvs0 up",
    "addr add 10.96.0.10/32 dev skiff-ipvs0",
  ]);
  assert.deepEqual(plan.ipset, [
    "create SKIFF-CLUSTER-IP hash:ip,port",
    "add SKIFF-CLUSTER-IP 10.96.0.10,tcp:80",
    "create SKIFF-EXTERNAL-IP hash:ip,port",
    "create SKIFF-LOOP-BACK hash:ip,port,ip",
    "add SKIFF-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5",
    "add SKIFF-LOOP-BACK 10.244.2.5,tcp:8080,10.244.2.5",
    "create SKIFF-NODE-PORT-TCP bitmap:port range 0-65535",
    "create SKIFF-NODE-PORT-UDP bitmap:port range 0-65535",
  ]);
  assert.deepEqual(plan.ipvsadm, [
    "-A -t 10.96.0.10:80 -s rr",
    "-a -t 10.96.0.10:80 -r 10.244.1.5:8080 -m -w 1",
    "-a -t 10.96.0.10:80 -r 10.244.2.5:8080 -m -w 1",
  ]);
  assert.deepEqual([plan.ipAfter, plan.ipsetAfter], [[], []]);
});

Deno.test("planIpvs() converges from parsed kernel state: endpoint change, affinity, scheduler", () => {
  const current = {
    device: true,
    addresses: parseAddresses(
      "7: skiff-ipvs0    inet 10.96.0.10/32 scope global skiff-ipvs0\\       valid_lft forever\n" +
        "7: skiff-ipvs0    inet 10.96.0.99/32 scope global skiff-ipvs0\n",
    ),
    ipsets: parseIpsetSave([
      "create SKIFF-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536",
      "add SKIFF-CLUSTER-IP 10.96.0.10,tcp:80",
      "add SKIFF-CLUSTER-IP 10.96.0.99,udp:53",
      "create SKIFF-EXTERNAL-IP hash:ip,port family inet hashsize 1024 maxelem 65536",
      "create SKIFF-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536",
      "add SKIFF-LOOP-BACK 10.244.2.5,tcp:8080,10.244.2.5",
      "create SKIFF-NODE-PORT-TCP bitmap:port range 0-65535",
      "create SKIFF-NODE-PORT-UDP bitmap:port range 0-65535",
    ].join("\n")),
    services: parseIpvsadmSave([
      "-A -t 10.96.0.10:80 -s rr",
      "-a -t 10.96.0.10:80 -r 10.244.2.5:8080 -m -w 1",
      "-a -t 10.96.0.10:80 -r 10.244.2.6:8080 -m -w 1",
      "-A -u 10.96.0.99:53 -s rr",
      "-a -u 10.96.0.99:53 -r 10.244.2.7:53 -m -w 1",
    ].join("\n")),
  };
  const desired = desiredIpvsState(
    snap(svc({ sessionAffinity: "ClientIP", affinityTimeoutSeconds: 600 }), [
      ep("10.244.2.5"),
      ep("10.244.3.1"),
    ]),
    { ...ctx, scheduler: "lc" },
  );
  const plan = planIpvs(current, desired);
  assert.deepEqual(plan.ip, []);
  assert.deepEqual(plan.ipset, ["add SKIFF-LOOP-BACK 10.244.3.1,tcp:8080,10.244.3.1"]);
  assert.deepEqual(plan.ipvsadm, [
    "-E -t 10.96.0.10:80 -s lc -p 600",
    "-a -t 10.96.0.10:80 -r 10.244.3.1:8080 -m -w 1",
    "-d -t 10.96.0.10:80 -r 10.244.2.6:8080",
    "-D -u 10.96.0.99:53",
  ]);
  assert.deepEqual(plan.ipAfter, ["addr del 10.96.0.99/32 dev skiff-ipvs0"]);
  assert.deepEqual(plan.ipsetAfter, ["del SKIFF-CLUSTER-IP 10.96.0.99,udp:53"]);
  // Applied, the same desired state plans nothing.
  const again = planIpvs(desired, desired);
  assert.deepEqual(again, { ip: [], ipset: [], ipvsadm: [], ipAfter: [], ipsetAfter: [] });
});

Deno.test("planIpvs() puts NodePorts on node addresses and externalIPs on the device, policy Local", () => {
  const service = svc({
    externalIPs: ["192.168.100.50"],
    externalTrafficPolicy: "Local",
    ports: [{ name: "dns", protocol: "UDP", port: 53, targetPort: 5353, nodePort: 30053 }],
  });
  const plan = planIpvs(
    EMPTY_IPVS_STATE,
    desiredIpvsState(snap(service, [ep("10.244.1.5", "n1"), ep("10.244.2.5")]), ctx),
  );
  assert.ok(plan.ip.includes("addr add 192.168.100.50/32 dev skiff-ipvs0"));
  assert.ok(plan.ipset.includes("add SKIFF-NODE-PORT-UDP 30053"));
  assert.ok(plan.ipset.includes("add SKIFF-EXTERNAL-IP 192.168.100.50,udp:53"));
  assert.deepEqual(plan.ipvsadm, [
    "-A -u 10.96.0.10:53 -s rr",
    "-a -u 10.96.0.10:53 -r 10.244.1.5:5353 -m -w 1",
    "-a -u 10.96.0.10:53 -r 10.244.2.5:5353 -m -w 1",
    "-A -u 192.168.100.11:30053 -s rr",
    "-a -u 192.168.100.11:30053 -r 10.244.1.5:5353 -m -w 1",
    "-A -u 192.168.100.50:53 -s rr",
    "-a -u 192.168.100.50:53 -r 10.244.1.5:5353 -m -w 1",
  ]);
});

Deno.test("planIpvs() removing every Service removes servers, addresses and set members", () => {
  const installed = desiredIpvsState(snap(svc(), [ep("10.244.2.5")]), ctx);
  const plan = planIpvs(installed, desiredIpvsState({ services: [] }, ctx));
  assert.deepEqual(plan.ipvsadm, ["-D -t 10.96.0.10:80"]);
  assert.deepEqual(plan.ipAfter, ["addr del 10.96.0.10/32 dev skiff-ipvs0"]);
  assert.deepEqual(plan.ipsetAfter, [
    "del SKIFF-CLUSTER-IP 10.96.0.10,tcp:80",
    "del SKIFF-LOOP-BACK 10.244.2.5,tcp:8080,10.244.2.5",
  ]);
});

Deno.test("desiredIpvsState() refuses a bad scheduler and a malformed snapshot", () => {
  assert.throws(
    () => desiredIpvsState({ services: [] }, { ...ctx, scheduler: "r r" }),
    /scheduler "r r"/,
  );
  assert.throws(
    () => desiredIpvsState(snap(svc({ clusterIPs: ["x"] }), []), ctx),
    /clusterIPs\[0\]: "x"/,
  );
});

Deno.test("ipvsChains() marks through ipsets and masquerades hairpin traffic", () => {
  const { chains, jumps } = ipvsChains(ctx);
  const text = chains.flatMap((c) => c.rules.map((r) => renderRule(c.name, r)));
  assert.ok(
    text.includes(
      '-A SKIFF-SERVICES ! -s 10.244.0.0/16 -m comment --comment "skiff: masquerade off-cluster traffic to ClusterIPs" -m set --match-set SKIFF-CLUSTER-IP dst,dst -j SKIFF-MARK-MASQ',
    ),
  );
  assert.ok(
    text.includes(
      '-A SKIFF-NODEPORTS -p udp -m comment --comment "skiff: masquerade udp NodePort traffic" -m set --match-set SKIFF-NODE-PORT-UDP dst -j SKIFF-MARK-MASQ',
    ),
  );
  assert.match(
    text.find((l) => l.startsWith("-A SKIFF-SVC-POSTRTG"))!,
    /SKIFF-LOOP-BACK dst,dst,src -j MASQUERADE$/,
  );
  assert.ok(!jumps.some((j) => j.rule.target.includes("SKIFF-SVC-REJECT")));
});

Deno.test("isOurVirtualServer() claims device addresses and our NodePorts, never foreign servers", () => {
  const device = new Set(["10.96.0.10"]);
  const sets = new Map([["SKIFF-NODE-PORT-TCP", new Set(["30080"])]]);
  const node = new Set(["192.168.100.11"]);
  assert.ok(isOurVirtualServer("-t 10.96.0.10:80", device, sets, node));
  assert.ok(isOurVirtualServer("-t 192.168.100.11:30080", device, sets, node));
  assert.ok(!isOurVirtualServer("-u 192.168.100.11:30080", device, sets, node), "UDP set is empty");
  assert.ok(!isOurVirtualServer("-t 192.168.100.11:22", device, sets, node));
  assert.ok(
    !isOurVirtualServer("-t 192.168.100.12:30080", device, sets, node),
    "not a node address",
  );
  assert.ok(
    isOurVirtualServer("-t 192.168.100.12:30080", device, sets),
    "any address without a list",
  );
});
