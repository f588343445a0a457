/** `uninstallFallback()` leaves no skiff chain, rule or ipset in a namespace, foreign rules kept. */
import assert from "node:assert/strict";
import { createLab } from "../lab/lab.ts";
import { uninstallFallback } from "../../agent/fallback/fallback.ts";
import { createIptablesDataplane } from "../../agent/fallback/iptables_dataplane.ts";
import { ensureNodeRules } from "../../agent/fallback/node_rules.ts";
import { makeBackend } from "../../agent/fallback/iptables_backend.ts";
import { desiredIpvsState, EMPTY_IPVS_STATE, planIpvs } from "../../agent/fallback/ipvs_plan.ts";
import { CLUSTER_CIDR, podCidr } from "./lab_pods.ts";

Deno.test("uninstallFallback() removes node rules, Service chains and ipsets, and nothing else", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  await node.run(["iptables-legacy", "-A", "INPUT", "-s", "10.9.0.0/16", "-j", "ACCEPT"]);
  await node.run(["ipset", "create", "FOREIGN", "hash:ip"]);
  const backend = makeBackend("legacy", "test", node.nsPath);
  const rulesConfig = { clusterCidr: CLUSTER_CIDR, podCidr: podCidr(node) };
  const first = await ensureNodeRules(backend, rulesConfig);
  assert.ok(first.operations > 0);
  assert.equal((await ensureNodeRules(backend, rulesConfig)).operations, 0);
  const plane = await createIptablesDataplane({
    backend,
    nodeName: node.name,
    clusterCidr: CLUSTER_CIDR,
    nodePortAddresses: [node.ip],
  });
  const snapshot = {
    services: [{
      service: {
        namespace: "default",
        name: "web",
        clusterIPs: ["10.96.0.10"],
        externalIPs: [],
        loadBalancerIPs: [],
        ports: [{
          name: "http",
          protocol: "TCP" as const,
          port: 80,
          targetPort: 8080,
          nodePort: 30080,
        }],
        sessionAffinity: "ClientIP" as const,
        affinityTimeoutSeconds: 60,
        externalTrafficPolicy: "Cluster" as const,
        internalTrafficPolicy: "Cluster" as const,
      },
      endpoints: [{
        ip: "10.244.1.5",
        node: node.name,
        ready: true,
        serving: true,
        terminating: false,
      }],
    }],
  };
  await plane.sync(snapshot);
  // ipsets as the ipvs mode would leave them (IP_VS itself is missing on this kernel).
  const plan = planIpvs(
    EMPTY_IPVS_STATE,
    desiredIpvsState(snapshot, { nodeName: node.name, nodeAddresses: [node.ip] }),
  );
  await node.run(["ipset", "restore"], { stdin: plan.ipset.join("\n") + "\n" });

  // A stale chain left in the other flavour (a host that switched) goes too.
  await node.run(["iptables-nft", "-t", "nat", "-N", "SKIFF-SERVICES"]);

  const report = await uninstallFallback({ backend });
  assert.ok(report.chainsRemoved >= 8, JSON.stringify(report));
  assert.equal(report.ipsetsRemoved.length, 5);
  const saved = (await node.run(["iptables-legacy-save"])).stdout;
  assert.doesNotMatch(saved, /SKIFF/i);
  assert.match(saved, /-A INPUT -s 10\.9\.0\.0\/16 -j ACCEPT/);
  assert.doesNotMatch((await node.run(["iptables-nft-save"])).stdout, /SKIFF/i);
  assert.deepEqual((await node.run(["ipset", "list", "-n"])).stdout.trim().split("\n"), [
    "FOREIGN",
  ]);
  assert.equal(
    (await node.run(["ip", "link", "show", "skiff-ipvs0"], { allowFailure: true })).code,
    1,
  );
  // Again: nothing left to do, no error.
  const again = await uninstallFallback({ backend });
  assert.deepEqual([again.chainsRemoved, again.ipsetsRemoved.length], [0, 0]);
});
