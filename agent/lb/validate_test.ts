// Service validation: defaults, accepted shapes, and one refusal per rule with its field path.
import assert from "node:assert/strict";
import {
  checkSnapshotConflicts,
  isFrozenEntry,
  MAX_BACKENDS_PER_SERVICE,
  parseService,
  parseServiceEntry,
  parseSnapshot,
  serviceEntryToJson,
  ServiceValidationError,
} from "./validate.ts";

const WEB = {
  namespace: "default",
  name: "web",
  clusterIP: "10.96.0.10",
  ports: [{ port: 80, targetPort: 8080, protocol: "TCP", nodePort: 30080 }],
  externalIPs: [],
  sessionAffinity: "ClientIP",
  endpoints: [{ ip: "10.244.1.5", node: "n1" }],
};

/** WEB with some fields replaced (undefined removes a field). */
function web(patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(WEB);
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** Asserts that parsing throws a ServiceValidationError at `path` whose problem matches. */
function refuses(fn: () => unknown, path: string, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ServiceValidationError, `not a ServiceValidationError: ${e}`);
    assert.equal(e.path, path, `path of "${e.message}"`);
    assert.match(e.problem, problem);
    assert.equal(e.message, path ? `${path}: ${e.problem}` : e.problem);
    return true;
  });
}

Deno.test("parseServiceEntry() reads the human shape and fills defaults", () => {
  const { service, endpoints } = parseServiceEntry({
    name: "web",
    clusterIP: "10.96.0.10",
    ports: [{ port: 80 }],
    endpoints: [{ ip: "10.244.1.5", node: "n1" }],
  });
  assert.deepEqual(service, {
    namespace: "default",
    name: "web",
    clusterIPs: ["10.96.0.10"],
    externalIPs: [],
    loadBalancerIPs: [],
    ports: [{ name: "", protocol: "TCP", port: 80, targetPort: 80 }],
    sessionAffinity: "None",
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
  });
  assert.deepEqual(endpoints, [
    { ip: "10.244.1.5", node: "n1", ready: true, serving: true, terminating: false },
  ]);
});

Deno.test("parseService() reads the brief's example, nodePort and ClientIP included", () => {
  const s = parseService(WEB);
  assert.deepEqual(s.ports, [
    { name: "", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 },
  ]);
  assert.equal(s.sessionAffinity, "ClientIP");
  assert.equal(s.affinityTimeoutSeconds, 10800);
});

Deno.test("parseService() accepts clusterIPs, headless None, and a consistent clusterIP", () => {
  assert.deepEqual(
    parseService(web({ clusterIP: undefined, clusterIPs: ["10.96.0.11"] })).clusterIPs,
    [
      "10.96.0.11",
    ],
  );
  assert.deepEqual(
    parseService(web({ clusterIPs: ["10.96.0.10"] })).clusterIPs,
    ["10.96.0.10"],
  );
  assert.deepEqual(parseService(web({ clusterIP: "None" })).clusterIPs, []);
  assert.deepEqual(parseService(web({ clusterIP: undefined })).clusterIPs, []);
  refuses(
    () => parseService(web({ clusterIPs: ["10.96.0.11"] })),
    "clusterIP",
    /differs from clusterIPs\[0\]/,
  );
});

Deno.test("parseService() accepts Kubernetes' sessionAffinityConfig and the flat timeout", () => {
  const k = parseService(
    web({ sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } } }),
  );
  assert.equal(k.affinityTimeoutSeconds, 30);
  assert.equal(parseService(web({ affinityTimeoutSeconds: 1 })).affinityTimeoutSeconds, 1);
  assert.equal(parseService(web({ affinityTimeoutSeconds: 86400 })).affinityTimeoutSeconds, 86400);
  refuses(
    () =>
      parseService(web({
        affinityTimeoutSeconds: 5,
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } },
      })),
    "sessionAffinityConfig",
    /conflicts/,
  );
});

Deno.test("parseService() refuses each malformed field with its path", () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [web({ clusterIP: "10.96.0.300" }), "clusterIP", /not an IPv4 address/],
    [web({ clusterIP: "10.96.0.010" }), "clusterIP", /not an IPv4 address/],
    [web({ clusterIP: "0.0.0.0" }), "clusterIP", /unspecified/],
    [web({ clusterIP: "127.0.0.1" }), "clusterIP", /loopback/],
    [web({ clusterIP: "239.1.1.1" }), "clusterIP", /multicast/],
    [web({ clusterIP: "255.255.255.255" }), "clusterIP", /broadcast/],
    [web({ clusterIP: "169.254.1.1" }), "clusterIP", /link-local/],
    [web({ clusterIP: 167772160 }), "clusterIP", /must be an IPv4 address string, got number/],
    [web({ externalIPs: ["1.2.3"] }), "externalIPs[0]", /not an IPv4 address/],
    [web({ externalIPs: "1.2.3.4" }), "externalIPs", /must be a list/],
    [web({ externalIPs: ["10.96.0.10"] }), "externalIPs[0]", /duplicate frontend.*clusterIPs\[0\]/],
    [web({ loadBalancerIPs: ["1.2.3.4", "1.2.3.4"] }), "loadBalancerIPs[1]", /duplicate frontend/],
    [web({ ports: [{ port: 0 }] }), "ports[0].port", /0 is out of range 1\.\.65535/],
    [web({ ports: [{ port: 65536 }] }), "ports[0].port", /65536 is out of range/],
    [web({ ports: [{ port: 80.5 }] }), "ports[0].port", /must be an integer/],
    [web({ ports: [{ port: "80" }] }), "ports[0].port", /must be an integer, got "80"/],
    [web({ ports: [{}] }), "ports[0].port", /is required/],
    [web({ ports: [{ port: 80, targetPort: 0 }] }), "ports[0].targetPort", /out of range/],
    [web({ ports: [{ port: 80, targetPort: "http" }] }), "ports[0].targetPort", /named target/],
    [web({ ports: [{ port: 80, nodePort: 70000 }] }), "ports[0].nodePort", /out of range/],
    [
      web({ ports: [{ port: 80, protocol: "SCTP" }] }),
      "ports[0].protocol",
      /unknown protocol "SCTP"/,
    ],
    [web({ ports: [{ port: 80, protocol: "tcp" }] }), "ports[0].protocol", /upper case/],
    [web({ ports: [] }), "ports", /at least one port/],
    [web({ ports: undefined }), "ports", /is required/],
    [web({ ports: [{ port: 80, name: "a" }, { port: 81 }] }), "ports[1].name", /is required when/],
    [
      web({ ports: [{ port: 80, name: "a" }, { port: 81, name: "a" }] }),
      "ports[1].name",
      /duplicate port name "a"/,
    ],
    [
      web({ ports: [{ port: 80, name: "a" }, { port: 80, name: "b" }] }),
      "ports[1].port",
      /duplicate frontend: 80\/TCP/,
    ],
    [
      web({
        ports: [{ port: 80, name: "a", nodePort: 30001 }, { port: 81, name: "b", nodePort: 30001 }],
      }),
      "ports[1].nodePort",
      /duplicate nodePort 30001\/TCP/,
    ],
    [web({ ports: [{ port: 80, name: "Http" }] }), "ports[0].name", /not a valid port name/],
    [web({ ports: [{ port: 80, targetport: 8080 }] }), "ports[0].targetport", /unknown field/],
    [web({ clusterIp: "10.96.0.1" }), "clusterIp", /unknown field \(allowed: namespace, name/],
    [web({ name: undefined }), "name", /is required/],
    [web({ name: "Web_1" }), "name", /not a DNS label/],
    [web({ name: "a".repeat(64) }), "name", /not a DNS label/],
    [web({ namespace: "" }), "namespace", /non-empty/],
    [web({ sessionAffinity: "clientip" }), "sessionAffinity", /"None", "ClientIP"/],
    [web({ affinityTimeoutSeconds: 0 }), "affinityTimeoutSeconds", /0 is out of range 1\.\.86400/],
    [web({ affinityTimeoutSeconds: 86401 }), "affinityTimeoutSeconds", /out of range/],
    [
      web({ sessionAffinity: "None", affinityTimeoutSeconds: 60 }),
      "affinityTimeoutSeconds",
      /only valid with sessionAffinity "ClientIP"/,
    ],
    [
      web({ sessionAffinityConfig: { clientIP: { timeoutSeconds: -1 } } }),
      "sessionAffinityConfig.clientIP.timeoutSeconds",
      /out of range/,
    ],
    [web({ externalTrafficPolicy: "local" }), "externalTrafficPolicy", /"Cluster", "Local"/],
    [web({ internalTrafficPolicy: 1 }), "internalTrafficPolicy", /got number 1/],
  ];
  for (const [input, path, problem] of cases) refuses(() => parseService(input), path, problem);
  refuses(() => parseService(null), "", /must be an object, got null/);
  refuses(() => parseService([WEB]), "", /must be an object, got a list/);
  refuses(() => parseService("web"), "", /must be an object/);
});

Deno.test("parseServiceEntry() reads endpoint conditions with EndpointSlice semantics", () => {
  const eps = (list: unknown[]) => parseServiceEntry(web({ endpoints: list })).endpoints;
  const cond = (e: { ready: boolean; serving: boolean; terminating: boolean }) => [
    e.ready,
    e.serving,
    e.terminating,
  ];
  const [a, b, c, d, e] = eps([
    { ip: "10.244.1.1", node: "n1" },
    { ip: "10.244.1.2", node: "n1", terminating: true },
    { ip: "10.244.1.3", node: "n1", terminating: true, serving: false },
    { ip: "10.244.1.4", node: "n1", ready: false },
    {
      ip: "10.244.1.5",
      node: "n1",
      conditions: { ready: false, serving: true, terminating: true },
    },
  ]);
  assert.deepEqual(cond(a), [true, true, false]);
  assert.deepEqual(cond(b), [false, true, true], "terminating: not ready, still serving");
  assert.deepEqual(cond(c), [false, false, true]);
  assert.deepEqual(cond(d), [false, false, false], "not ready and not terminating: not serving");
  assert.deepEqual(cond(e), [false, true, true]);
});

Deno.test("parseServiceEntry() reads endpoint ports by name and the one-port shorthand", () => {
  const one = parseServiceEntry(web({ endpoints: [{ ip: "10.244.1.5", node: "n1", port: 9090 }] }));
  assert.deepEqual(one.endpoints[0].ports, { "": 9090 });
  const two = parseServiceEntry(web({
    ports: [{ name: "http", port: 80 }, { name: "dns", port: 53, protocol: "UDP" }],
    endpoints: [{ ip: "10.244.1.5", node: "n1", ports: { http: 8080 } }],
  }));
  assert.deepEqual(two.endpoints[0].ports, { http: 8080 });
  assert.equal("ports" in parseServiceEntry(WEB).endpoints[0], false, "no ports: targetPort");
});

Deno.test("parseServiceEntry() refuses malformed endpoints with their path", () => {
  const two = [{ name: "http", port: 80 }, { name: "dns", port: 53, protocol: "UDP" }];
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [web({ endpoints: [{ node: "n1" }] }), "endpoints[0].ip", /is required/],
    [web({ endpoints: [{ ip: "10.244.1", node: "n1" }] }), "endpoints[0].ip", /not an IPv4/],
    [web({ endpoints: [{ ip: "127.0.0.1", node: "n1" }] }), "endpoints[0].ip", /loopback/],
    [web({ endpoints: [{ ip: "10.244.1.5" }] }), "endpoints[0].node", /is required/],
    [web({ endpoints: [{ ip: "10.244.1.5", node: "" }] }), "endpoints[0].node", /non-empty/],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1" }, { ip: "10.244.1.5", node: "n2" }] }),
      "endpoints[1].ip",
      /duplicate endpoint 10.244.1.5 \(also endpoints\[0\]\)/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", port: 0 }] }),
      "endpoints[0].port",
      /out of range/,
    ],
    [
      web({ ports: two, endpoints: [{ ip: "10.244.1.5", node: "n1", port: 80 }] }),
      "endpoints[0].port",
      /ambiguous/,
    ],
    [
      web({ ports: two, endpoints: [{ ip: "10.244.1.5", node: "n1", ports: { web: 80 } }] }),
      "endpoints[0].ports.web",
      /no port named "web" \(ports: "http", "dns"\)/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", ready: true, terminating: true }] }),
      "endpoints[0].ready",
      /cannot be true for a terminating endpoint/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", ready: true, serving: false }] }),
      "endpoints[0].ready",
      /cannot be true when serving is false/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", ready: false, serving: true }] }),
      "endpoints[0].serving",
      /must equal ready unless/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", ready: "yes" }] }),
      "endpoints[0].ready",
      /must be true or false, got "yes"/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", ready: true, conditions: {} }] }),
      "endpoints[0].ready",
      /both here and in "conditions"/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", conditions: { Ready: true } }] }),
      "endpoints[0].conditions.Ready",
      /unknown field/,
    ],
    [
      web({ endpoints: [{ ip: "10.244.1.5", node: "n1", weight: 2 }] }),
      "endpoints[0].weight",
      /unknown field/,
    ],
    [web({ endpoints: {} }), "endpoints", /must be a list/],
  ];
  for (const [input, path, problem] of cases) {
    refuses(() => parseServiceEntry(input), path, problem);
  }
});

Deno.test("parseServiceEntry() refuses more endpoints than a Maglev table can hold", () => {
  const many = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ ip: `10.1.${i >> 8}.${i & 255}`, node: "n1" }));
  assert.equal(
    parseServiceEntry(web({ endpoints: many(MAX_BACKENDS_PER_SERVICE) })).endpoints.length,
    MAX_BACKENDS_PER_SERVICE,
  );
  refuses(
    () => parseServiceEntry(web({ endpoints: many(MAX_BACKENDS_PER_SERVICE + 1) })),
    "endpoints",
    new RegExp(
      `${MAX_BACKENDS_PER_SERVICE + 1} endpoints exceed the limit of ${MAX_BACKENDS_PER_SERVICE}`,
    ),
  );
});

Deno.test("parseSnapshot() refuses frontends, NodePorts and names shared across Services", () => {
  const other = (patch: Record<string, unknown>) =>
    web({ name: "other", clusterIP: "10.96.0.20", ...patch });
  assert.equal(
    parseSnapshot({ services: [WEB, other({ ports: [{ port: 80 }] })] }).services.length,
    2,
  );
  refuses(
    () => parseSnapshot({ services: [WEB, web({})] }),
    "services[1]",
    /Service default\/web is defined twice \(also services\[0\]\)/,
  );
  refuses(
    () =>
      parseSnapshot({ services: [WEB, other({ clusterIP: "10.96.0.10", ports: [{ port: 80 }] })] }),
    "services[1]",
    /duplicate frontend: 10.96.0.10:80\/TCP of Service default\/other is already 10.96.0.10:80\/TCP of Service default\/web/,
  );
  refuses(
    () => parseSnapshot({ services: [WEB, other({ externalIPs: ["10.96.0.10"] })] }),
    "services[1]",
    /duplicate frontend: 10.96.0.10:80\/TCP/,
  );
  refuses(
    () => parseSnapshot({ services: [WEB, other({ ports: [{ port: 81, nodePort: 30080 }] })] }),
    "services[1]",
    /nodePort 30080\/TCP of Service default\/other is already nodePort 30080\/TCP of Service default\/web/,
  );
  // Same address and port, other protocol: two different frontends.
  parseSnapshot({
    services: [
      WEB,
      other({ clusterIP: "10.96.0.10", ports: [{ port: 80, protocol: "UDP", nodePort: 30080 }] }),
    ],
  });
  // Same name in another namespace: a different Service.
  parseSnapshot({
    services: [WEB, web({ namespace: "prod", clusterIP: "10.96.0.30", ports: [{ port: 80 }] })],
  });
  refuses(
    () => parseSnapshot({ services: [WEB, { name: "x", ports: [{ port: -1 }] }] }),
    "services[1].ports[0].port",
    /out of range/,
  );
  refuses(() => parseSnapshot({ services: {} }), "services", /must be a list/);
  refuses(() => parseSnapshot({ service: [] }), "service", /unknown field/);
  assert.deepEqual(parseSnapshot({}), { services: [] });
  assert.equal(parseSnapshot([WEB]).services.length, 1, "a bare list");
});

Deno.test("serviceEntryToJson() and JSON of a snapshot both parse back to the same entry", () => {
  const entry = parseServiceEntry(web({
    ports: [{ name: "http", port: 80, nodePort: 30080 }, {
      name: "dns",
      port: 53,
      protocol: "UDP",
    }],
    externalIPs: ["192.168.100.50"],
    loadBalancerIPs: ["192.168.100.60"],
    sessionAffinity: "ClientIP",
    affinityTimeoutSeconds: 5,
    externalTrafficPolicy: "Local",
    endpoints: [
      { ip: "10.244.1.5", node: "n1", ports: { http: 8080 } },
      { ip: "10.244.2.5", node: "n2", terminating: true },
    ],
  }));
  const json = JSON.parse(JSON.stringify(serviceEntryToJson(entry)));
  assert.deepEqual(parseServiceEntry(json), entry);
  const snapshot = { services: [entry] };
  assert.deepEqual(parseSnapshot(JSON.parse(JSON.stringify(snapshot))), snapshot);
});

Deno.test("checkSnapshotConflicts() names the entry by the given path prefix", () => {
  const a = parseServiceEntry(WEB);
  const b = parseServiceEntry(web({ name: "b" }));
  refuses(
    () => checkSnapshotConflicts([a, b], "file.services"),
    "file.services[1]",
    /duplicate frontend/,
  );
});

Deno.test("parseServiceEntry() returns an entry frozen all the way down", () => {
  const entry = parseServiceEntry({
    name: "web",
    clusterIP: "10.96.0.10",
    externalIPs: ["192.168.100.200"],
    ports: [{ name: "http", port: 80, targetPort: 8080, nodePort: 30080 }],
    endpoints: [{ ip: "10.244.1.5", node: "n1", ports: { http: 8081 } }],
  });
  assert.ok(isFrozenEntry(entry));
  assert.throws(() => (entry.endpoints as unknown[]).push({}), TypeError);
  assert.throws(() => {
    (entry.endpoints[0].ports as Record<string, number>).http = 1;
  }, TypeError);
  assert.throws(() => (entry.service.ports[0] as { port: number }).port = 1, TypeError);
  // a copy, or an entry with one unfrozen part, is not
  assert.ok(!isFrozenEntry(structuredClone(entry)));
  assert.ok(!isFrozenEntry({ ...entry, endpoints: [...entry.endpoints] }));
  assert.ok(!isFrozenEntry({ ...entry }));
});
