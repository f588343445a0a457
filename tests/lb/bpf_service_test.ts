/** The Service suite against the eBPF data plane (socket LB on node 1's cgroup, tc LB on its uplink). */
import { BpfDataplane } from "../../agent/lb/bpf_dataplane.ts";
import { defineServiceSuite } from "./service_suite.ts";

defineServiceSuite("bpf", (_lab, node) =>
  BpfDataplane.install({
    pinDir: node.pinDir,
    cgroup: node.cgroup,
    devices: [node.uplink],
    netns: node.nsPath,
    nodeName: node.name,
    nodeIPs: [node.ip],
  }));
