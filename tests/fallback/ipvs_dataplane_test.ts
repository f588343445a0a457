/**
 * The IPVS data plane on a real kernel. This machine has no IP_VS: here the test checks that
 * creating it fails plainly; the traffic test runs where /proc/net/ip_vs exists (the VMs).
 * @module
 */
import assert from "node:assert/strict";
import { createLab } from "../lab/lab.ts";
import { probeIpvs } from "../../agent/fallback/detect.ts";
import { createIpvsDataplane } from "../../agent/fallback/ipvs_dataplane.ts";
import { makeBackend } from "../../agent/fallback/iptables_backend.ts";
import { convergeChains } from "../../agent/fallback/iptables_converge.ts";
import {
  desiredIpvsState,
  EMPTY_IPVS_STATE,
  ipvsChains,
  parseIpsetSave,
  planIpvs,
} from "../../agent/fallback/ipvs_plan.ts";
import { addPod, ask, CLUSTER_CIDR, routePodSubnets, startPeerEcho } from "./lab_pods.ts";

const ipvs = await probeIpvs();

Deno.test({
  name: "createIpvsDataplane() without IP_VS fails with a plain message",
  ignore: ipvs.ok,
  fn: async () => {
    await assert.rejects(
      createIpvsDataplane({ nodeName: "n1", nodeAddresses: [] }),
      /^Error: this kernel has no IP_VS support: /,
    );
  },
});

Deno.test("ipvs mode's ipsets and iptables chains load on this kernel and read back as planned", async () => {
  // IP_VS itself is missing here, but the ipset and iptables halves of the mode are real.
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  const ctx = { nodeName: node.name, nodeAddresses: [node.ip], clusterCidr: CLUSTER_CIDR };
  const desired = desiredIpvsState({
    services: [{
      service: {
        namespace: "default",
        name: "web",
        clusterIPs: ["10.96.0.10"],
        externalIPs: ["192.168.100.200"],
        loadBalancerIPs: [],
        ports: [{ name: "dns", protocol: "UDP", port: 53, targetPort: 5353, nodePort: 30053 }],
        sessionAffinity: "None",
        affinityTimeoutSeconds: 10800,
        externalTrafficPolicy: "Cluster",
        internalTrafficPolicy: "Cluster",
      },
      endpoints: [{
        ip: "10.244.1.5",
        node: node.name,
        ready: true,
        serving: true,
        terminating: false,
      }],
    }],
  }, ctx);
  const plan = planIpvs(EMPTY_IPVS_STATE, desired);
  await node.run(["ipset", "restore"], { stdin: plan.ipset.join("\n") + "\n" });
  const sets = parseIpsetSave((await node.run(["ipset", "save"])).stdout);
  assert.deepEqual(sets, desired.ipsets, "ipset save reads back exactly the planned members");
  const backend = makeBackend("legacy", "test", node.nsPath);
  const { chains, jumps } = ipvsChains(ctx);
  const first = await convergeChains(backend, chains, jumps);
  assert.ok(first.operations > 0);
  const again = await convergeChains(backend, chains, jumps);
  assert.equal(again.operations, 0, "the kernel prints the rules exactly as rendered");
});

Deno.test({
  name: "ipvs: ClusterIP reaches every endpoint, uninstall leaves no device, ipset or chain",
  ignore: !ipvs.ok,
  fn: async () => {
    await using lab = await createLab({ nodes: 2, outside: false });
    const [n1, n2] = lab.nodes;
    const client = await addPod(lab, n1, 1);
    const a = await addPod(lab, n1, 2);
    const b = await addPod(lab, n2, 1);
    await routePodSubnets(lab);
    await startPeerEcho(lab, a, 8080, "a ");
    await startPeerEcho(lab, b, 8080, "b ");
    const plane = await createIpvsDataplane({
      nodeName: n1.name,
      nodeAddresses: [n1.ip],
      clusterCidr: CLUSTER_CIDR,
      backend: makeBackend("legacy", "test", n1.nsPath),
    });
    const endpoint = (ip: string, node: string) => ({
      ip,
      node,
      ready: true,
      serving: true,
      terminating: false,
    });
    await plane.sync({
      services: [{
        service: {
          namespace: "default",
          name: "web",
          clusterIPs: ["10.96.0.10"],
          externalIPs: [],
          loadBalancerIPs: [],
          ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }],
          sessionAffinity: "None",
          affinityTimeoutSeconds: 10800,
          externalTrafficPolicy: "Cluster",
          internalTrafficPolicy: "Cluster",
        },
        endpoints: [endpoint(a.ip!, n1.name), endpoint(b.ip!, n2.name)],
      }],
    });
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      seen.add((await ask(client, "10.96.0.10", 80)).split(" ")[0]);
    }
    assert.deepEqual(seen, new Set(["a", "b"]));
    await plane.uninstall();
    assert.doesNotMatch((await n1.run(["iptables-legacy-save"])).stdout, /SKIFF/);
    assert.doesNotMatch((await n1.run(["ipset", "list", "-n"])).stdout, /SKIFF/);
    assert.equal(
      (await n1.run(["ip", "link", "show", "skiff-ipvs0"], { allowFailure: true })).code,
      1,
    );
  },
});
