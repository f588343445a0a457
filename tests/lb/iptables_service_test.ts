/**
 * The Service suite, unchanged, against the iptables data plane on node 1 (legacy or nft as
 * detected). Where iptables cannot match a BPF behaviour, the test below says so.
 * @module
 */
import assert from "node:assert/strict";
import { createIptablesDataplane } from "../../agent/fallback/iptables_dataplane.ts";
import { serviceRules } from "../../agent/fallback/iptables_rules.ts";
import { CLUSTER_CIDR } from "../fallback/lab_pods.ts";
import { defineServiceSuite } from "./service_suite.ts";
import { service, WEB_PORTS } from "./service_world.ts";

defineServiceSuite(
  "iptables",
  (_lab, node) =>
    createIptablesDataplane({ netns: node.nsPath, nodeName: node.name, clusterCidr: CLUSTER_CIDR }),
);

Deno.test("iptables cannot give Maglev's minimal disruption: adding a backend reshuffles flows", () => {
  // BPF's Maglev table moves only ~1/n of new-flow choices when a backend joins. iptables picks
  // with `statistic --probability 1/(n-i)` over an ordered list, so a client's choice is random
  // per connection and has no stable mapping to keep: existing flows stay (conntrack), but
  // there is no consistent hashing of new flows. This test pins that documented difference.
  const endpoints = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      ip: `10.244.2.${i + 1}`,
      node: "n2",
      ready: true,
      serving: true,
      terminating: false,
    }));
  const rules = (n: number) =>
    serviceRules({
      service: service("web", { clusterIPs: ["10.96.0.10"], ports: [WEB_PORTS[0]] }),
      endpoints: endpoints(n),
    }, { nodeName: "n1" }).chains.find((c) => c.name.startsWith("SKIFF-SVC-"))!.rules;
  const probabilities = (n: number) =>
    rules(n).map((r) => r.matches?.[r.matches.indexOf("--probability") + 1] ?? "rest");
  assert.deepEqual(probabilities(3), ["0.33333333349", "0.50000000000", "rest"]);
  assert.deepEqual(probabilities(4), ["0.25000000000", "0.33333333349", "0.50000000000", "rest"]);
});
