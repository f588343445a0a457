/** Pure tests of the iptables Service rule generator and the snapshot check. */
import assert from "node:assert/strict";
import type { Endpoint, Service, ServiceEntry } from "../lb/model.ts";
import {
  chainHash,
  generateServiceRules,
  isServiceChain,
  probability,
  serviceRules,
} from "./iptables_rules.ts";
import { renderRule } from "./iptables_text.ts";

const ctx = { nodeName: "n1", clusterCidr: "10.244.0.0/16" };

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

function ep(ip: string, node = "n2", state: Partial<Endpoint> = {}): Endpoint {
  return { ip, node, ready: true, serving: true, terminating: false, ...state };
}

function lines(entry: ServiceEntry, context = ctx): string[] {
  return serviceRules(entry, context).chains.flatMap((c) =>
    c.rules.map((r) => renderRule(c.name, r))
  );
}

Deno.test("probability() prints 1/k as iptables-save does (kernel keeps round(2^31·p))", () => {
  assert.equal(probability(2), "0.50000000000");
  assert.equal(probability(3), "0.33333333349");
  assert.equal(probability(10), "0.10000000009");
});

Deno.test("chainHash() gives 16 base32 characters, stable per input", () => {
  const h = chainHash("ns/web:http/tcp");
  assert.match(h, /^[A-Z2-7]{16}$/);
  assert.equal(h, chainHash("ns/web:http/tcp"));
  assert.notEqual(h, chainHash("ns/web:http/udp"));
  assert.ok(isServiceChain(`SKIFF-SEP-${h}`));
  assert.ok(!isServiceChain("SKIFF-POSTRTG"), "node rule chains are not the data plane's");
});

Deno.test("serviceRules() spreads n endpoints with probabilities 1/n, 1/(n-1), …, then the last", () => {
  const all = lines({
    service: svc(),
    endpoints: [ep("10.244.2.3"), ep("10.244.2.1"), ep("10.244.2.2")],
  });
  const svcLines = all.filter((l) => l.startsWith("-A SKIFF-SVC-"));
  assert.match(
    svcLines[0],
    /! -s 10\.244\.0\.0\/16 -d 10\.96\.0\.10\/32 -p tcp .*-j SKIFF-MARK-MASQ$/,
  );
  assert.match(
    svcLines[1],
    /"ns\/web:http -> 10\.244\.2\.1:8080" -m statistic --mode random --probability 0\.33333333349 -j SKIFF-SEP-/,
  );
  assert.match(
    svcLines[2],
    /10\.244\.2\.2:8080" -m statistic --mode random --probability 0\.50000000000 -j SKIFF-SEP-/,
  );
  assert.match(svcLines[3], /10\.244\.2\.3:8080" -j SKIFF-SEP-/);
  const dnat = all.filter((l) => l.includes("DNAT"));
  assert.equal(dnat.length, 3);
  assert.match(
    dnat[0],
    /^-A SKIFF-SEP-[A-Z2-7]{16} -p tcp -m comment --comment "ns\/web:http" -m tcp -j DNAT --to-destination 10\.244\.2\.\d:8080$/,
  );
});

Deno.test("serviceRules() uses ClientIP affinity through recent lists with the timeout", () => {
  const all = lines({
    service: svc({ sessionAffinity: "ClientIP", affinityTimeoutSeconds: 60 }),
    endpoints: [ep("10.244.2.1"), ep("10.244.2.2")],
  });
  const checks = all.filter((l) => l.includes("--rcheck"));
  assert.equal(checks.length, 2);
  assert.match(
    checks[0],
    /-m recent --rcheck --seconds 60 --reap --name (SKIFF-SEP-\S+) --mask 255\.255\.255\.255 --rsource -j \1$/,
  );
  assert.equal(all.filter((l) => l.includes("-m recent --set")).length, 2);
});

Deno.test("serviceRules() falls back to serving terminating endpoints only when none is ready", () => {
  const mixed = lines({
    service: svc(),
    endpoints: [ep("10.244.2.1"), ep("10.244.2.2", "n2", { ready: false, terminating: true })],
  });
  assert.equal(mixed.filter((l) => l.includes("DNAT")).length, 1);
  const terminating = lines({
    service: svc(),
    endpoints: [ep("10.244.2.2", "n2", { ready: false, terminating: true })],
  });
  assert.equal(terminating.filter((l) => l.includes("DNAT")).length, 1);
});

Deno.test("serviceRules() rejects a Service without endpoints in the filter table", () => {
  const r = serviceRules({
    service: svc({
      ports: [{ name: "", protocol: "UDP", port: 53, targetPort: 53, nodePort: 30053 }],
    }),
    endpoints: [],
  }, ctx);
  assert.deepEqual(r.chains, []);
  assert.deepEqual(r.services, []);
  assert.deepEqual(r.reject.map((x) => renderRule("SKIFF-SVC-REJECT", x)), [
    '-A SKIFF-SVC-REJECT -d 10.96.0.10/32 -p udp -m comment --comment "ns/web has no endpoints" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable',
    '-A SKIFF-SVC-REJECT -p udp -m comment --comment "ns/web has no endpoints" -m addrtype --dst-type LOCAL -m udp --dport 30053 -j REJECT --reject-with icmp-port-unreachable',
  ]);
});

Deno.test("serviceRules() honours externalTrafficPolicy Local for NodePorts and externalIPs", () => {
  const service = svc({
    externalIPs: ["192.168.100.50"],
    externalTrafficPolicy: "Local",
    ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 }],
  });
  const withLocal = serviceRules(
    { service, endpoints: [ep("10.244.1.5", "n1"), ep("10.244.2.5")] },
    ctx,
  );
  const ext = withLocal.chains.find((c) => c.name.startsWith("SKIFF-EXT-"))!;
  const extLines = ext.rules.map((r) => renderRule(ext.name, r));
  assert.match(extLines[0], /^-A SKIFF-EXT-\S+ -s 10\.244\.0\.0\/16 .*-j SKIFF-SVC-/);
  assert.match(extLines.at(-1)!, /-j SKIFF-SVL-/);
  const svl = withLocal.chains.find((c) => c.name.startsWith("SKIFF-SVL-"))!;
  assert.equal(svl.rules.length, 1, "only the local endpoint");
  assert.match(renderRule(svl.name, svl.rules[0]), /10\.244\.1\.5:8080/);
  assert.equal(withLocal.reject.length, 0);

  const noLocal = serviceRules({ service, endpoints: [ep("10.244.2.5")] }, ctx);
  assert.ok(!noLocal.chains.some((c) => c.name.startsWith("SKIFF-SVL-")));
  assert.deepEqual(noLocal.reject.map((r) => r.target.join(" ")), ["-j DROP", "-j DROP"]);
});

Deno.test("generateServiceRules() ends SKIFF-SERVICES with the NodePort jump, or per node address", () => {
  const snapshot = { services: [{ service: svc(), endpoints: [ep("10.244.2.1")] }] };
  const any = generateServiceRules(snapshot, ctx).chains.find((c) => c.name === "SKIFF-SERVICES")!;
  assert.deepEqual(any.rules.at(-1)!.matches, ["-m", "addrtype", "--dst-type", "LOCAL"]);
  const only = generateServiceRules(snapshot, { ...ctx, nodePortAddresses: ["192.168.100.11"] })
    .chains.find((c) => c.name === "SKIFF-SERVICES")!;
  assert.equal(only.rules.at(-1)!.destination, "192.168.100.11");
});

Deno.test("generateServiceRules() refuses malformed snapshots naming the field", () => {
  const bad = (service: Partial<Service>, endpoints: Endpoint[] = []) => () =>
    generateServiceRules({ services: [{ service: svc(service), endpoints }] }, ctx);
  assert.throws(
    bad({ clusterIPs: ["10.96.0.300"] }),
    /services\[0\] \(ns\/web\)\.clusterIPs\[0\]: "10\.96\.0\.300" is not an IPv4 address/,
  );
  assert.throws(bad({ name: "Web!" }), /\.name: "Web!" is not a DNS name/);
  assert.throws(
    bad({ ports: [{ name: "a", protocol: "SCTP" as "TCP", port: 1, targetPort: 1 }] }),
    /ports\[0\]\.protocol: "SCTP" is not TCP or UDP/,
  );
  assert.throws(
    bad({ ports: [{ name: "a", protocol: "TCP", port: 1, targetPort: 0 }] }),
    /ports\[0\]\.targetPort: 0 is not a port/,
  );
  assert.throws(
    bad({ sessionAffinity: "ClientIP", affinityTimeoutSeconds: 0 }),
    /affinityTimeoutSeconds: 0 is not 1-86400/,
  );
  assert.throws(
    bad({}, [ep("10.244.2.1", "n2", { ports: { http: 70000 } })]),
    /endpoints\[0\]\.ports\.http: 70000 is not a port/,
  );
  assert.throws(
    () =>
      generateServiceRules({
        services: [
          {
            service: svc({
              ports: [{ name: "a", protocol: "TCP", port: 1, targetPort: 1, nodePort: 30001 }],
            }),
            endpoints: [],
          },
          {
            service: svc({
              name: "other",
              ports: [{ name: "a", protocol: "TCP", port: 1, targetPort: 1, nodePort: 30001 }],
            }),
            endpoints: [],
          },
        ],
      }, ctx),
    /services\[1\] \(ns\/other\)\.ports\[0\]\.nodePort: TCP\/30001 is already used by ns\/web/,
  );
});
