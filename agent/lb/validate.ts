/**
 * Turns untrusted JSON (the CLI's input, the services file) into model.ts values, filling the
 * Kubernetes defaults and refusing anything a data plane could not program, with errors that
 * name the field path and the problem. Also the inverse: a model value back to that JSON.
 * @module
 */
import { tryParseIpv4 } from "../net/ipv4.ts";
import { DEFAULT_MAGLEV_TABLE_SIZE } from "./maglev.ts";
import {
  type Endpoint,
  type Protocol,
  type Service,
  type ServiceEntry,
  serviceKey,
  type ServicePort,
  type ServiceSnapshot,
  type TrafficPolicy,
} from "./model.ts";

/**
 * Most endpoints one Service may have. Each backend needs its own slots in the Service's
 * Maglev table; at 1024 backends a 16381-slot table still gives each one 16 slots (so a
 * slot is ≤ 1/16 of a backend's share). Beyond that, balance and disruption degrade.
 */
export const MAX_BACKENDS_PER_SERVICE = 1024;
/** Kubernetes' default ClientIP affinity timeout (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
/** Kubernetes' maximum ClientIP affinity timeout (1 day). */
export const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;

/** Input that is not a valid Service; `path` names the field, like "ports[1].port". */
export class ServiceValidationError extends Error {
  constructor(readonly path: string, readonly problem: string) {
    super(path ? `${path}: ${problem}` : problem);
    this.name = "ServiceValidationError";
  }
}

/** Where a parse starts its field paths (e.g. "services[3]"); "" for the top level. */
export interface ParseOptions {
  readonly path?: string;
}

/**
 * Parses one Service (human JSON shape, see {@linkcode parseServiceEntry}) and returns the
 * Service without its endpoints. Endpoints, when present, are still validated.
 */
export function parseService(input: unknown, options: ParseOptions = {}): Service {
  return parseServiceEntry(input, options).service;
}

/**
 * Parses one Service with its endpoints. Accepted shapes:
 * - flat (for humans): `{"namespace":"default","name":"web","clusterIP":"10.96.0.10",
 *   "ports":[{"port":80,"targetPort":8080}],"endpoints":[{"ip":"10.244.1.5","node":"n1"}]}`
 * - the model's own shape `{"service":{…},"endpoints":[…]}` (so JSON of a snapshot parses).
 *
 * Defaults: namespace "default", protocol TCP, targetPort = port, port name "",
 * sessionAffinity None, affinity timeout 10800 s, both traffic policies Cluster, endpoint
 * conditions ready/serving true and terminating false (ready defaults to false when
 * terminating, serving to the value of ready).
 */
export function parseServiceEntry(input: unknown, options: ParseOptions = {}): ServiceEntry {
  const path = options.path ?? "";
  if (isObject(input) && "service" in input) {
    const obj = fields(input, path, ENTRY_FIELDS);
    const service = parseServiceFields(obj.service, join(path, "service"));
    return freezeEntry({
      service,
      endpoints: parseEndpoints(obj.endpoints, join(path, "endpoints"), service),
    });
  }
  const service = parseServiceFields(input, path, true);
  const endpoints = isObject(input) ? input.endpoints : undefined;
  return freezeEntry({
    service,
    endpoints: parseEndpoints(endpoints, join(path, "endpoints"), service),
  });
}

/**
 * Freezes a parsed entry all the way down (its types are readonly anyway). A frozen entry
 * passed again as the same object is known unchanged without comparing it field by field:
 * the reconciler skips 10k comparisons per sync for the entries the data plane re-passes.
 */
function freezeEntry(entry: ServiceEntry): ServiceEntry {
  const s = entry.service;
  for (const p of s.ports) Object.freeze(p);
  for (const list of [s.clusterIPs, s.externalIPs, s.loadBalancerIPs, s.ports]) {
    Object.freeze(list);
  }
  Object.freeze(s);
  for (const e of entry.endpoints) {
    if (e.ports) Object.freeze(e.ports);
    Object.freeze(e);
  }
  Object.freeze(entry.endpoints);
  return Object.freeze(entry);
}

/** Whether `entry` is frozen all the way down (as parseServiceEntry returns it). */
export function isFrozenEntry(entry: ServiceEntry): boolean {
  const s = entry.service;
  if (
    !Object.isFrozen(entry) || !Object.isFrozen(s) || !Object.isFrozen(s.clusterIPs) ||
    !Object.isFrozen(s.externalIPs) || !Object.isFrozen(s.loadBalancerIPs) ||
    !Object.isFrozen(s.ports) || !Object.isFrozen(entry.endpoints)
  ) return false;
  for (const p of s.ports) if (!Object.isFrozen(p)) return false;
  for (const e of entry.endpoints) {
    if (!Object.isFrozen(e) || (e.ports !== undefined && !Object.isFrozen(e.ports))) return false;
  }
  return true;
}

/**
 * Parses a desired-state snapshot `{"services":[entry, …]}` (a bare list of entries is
 * accepted too) and checks what spans Services: no two Services share a name, a frontend
 * (ip:port/protocol) or a NodePort.
 */
export function parseSnapshot(input: unknown, options: ParseOptions = {}): ServiceSnapshot {
  const path = options.path ?? "";
  let list: unknown = input;
  let listPath = path;
  if (!Array.isArray(input)) {
    const obj = fields(input, path, SNAPSHOT_FIELDS);
    list = obj.services ?? [];
    listPath = join(path, "services");
  }
  if (!Array.isArray(list)) fail(listPath, `must be a list of Services, got ${describe(list)}`);
  const services = list.map((item, i) => parseServiceEntry(item, { path: `${listPath}[${i}]` }));
  checkSnapshotConflicts(services, listPath);
  return { services };
}

/**
 * Checks what spans Services: unique namespace/name, no frontend ip:port/protocol or NodePort
 * used twice. The later of two clashing entries is reported; `path` is the list's path
 * ("services" gives "services[3]") or a function naming entry i. Throws ServiceValidationError.
 */
export function checkSnapshotConflicts(
  services: readonly ServiceEntry[],
  path: string | ((index: number) => string) = "services",
): void {
  const at = typeof path === "string" ? (i: number) => `${path}[${i}]` : path;
  const names = new Map<string, number>();
  const frontends = new Map<string, number>(); // frontend → index of the Service holding it
  for (let i = 0; i < services.length; i++) {
    const service = services[i].service;
    const key = serviceKey(service);
    const prior = names.get(key);
    if (prior !== undefined) fail(at(i), `Service ${key} is defined twice (also ${at(prior)})`);
    names.set(key, i);
    for (const frontend of frontendsOf(service)) {
      const other = frontends.get(frontend);
      if (other !== undefined) {
        const otherKey = serviceKey(services[other].service);
        fail(
          at(i),
          `duplicate frontend: ${frontend} of Service ${key} is already ${frontend} of Service ${otherKey}`,
        );
      }
      frontends.set(frontend, i);
    }
  }
}

/**
 * A Service's frontends, each a unique text: "10.96.0.10:80/TCP" for an address (ClusterIP,
 * externalIP, LoadBalancer IP), "nodePort 30080/TCP" for a NodePort (on every node address).
 */
export function frontendsOf(service: Service): string[] {
  const out: string[] = [];
  const ips = [...service.clusterIPs, ...service.externalIPs, ...service.loadBalancerIPs];
  for (const port of service.ports) {
    const suffix = `:${port.port}/${port.protocol}`;
    for (const ip of ips) out.push(ip + suffix);
    if (port.nodePort !== undefined) out.push(`nodePort ${port.nodePort}/${port.protocol}`);
  }
  return out;
}

/** The human JSON shape of an entry, defaults written out; parseServiceEntry reads it back. */
export function serviceEntryToJson(entry: ServiceEntry): Record<string, unknown> {
  const s = entry.service;
  return {
    namespace: s.namespace,
    name: s.name,
    clusterIPs: [...s.clusterIPs],
    externalIPs: [...s.externalIPs],
    loadBalancerIPs: [...s.loadBalancerIPs],
    ports: s.ports.map((p) => ({
      name: p.name,
      protocol: p.protocol,
      port: p.port,
      targetPort: p.targetPort,
      ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }),
    })),
    sessionAffinity: s.sessionAffinity,
    affinityTimeoutSeconds: s.affinityTimeoutSeconds,
    externalTrafficPolicy: s.externalTrafficPolicy,
    internalTrafficPolicy: s.internalTrafficPolicy,
    endpoints: entry.endpoints.map((e) => ({
      ip: e.ip,
      node: e.node,
      ...(e.ports === undefined ? {} : { ports: { ...e.ports } }),
      ready: e.ready,
      serving: e.serving,
      terminating: e.terminating,
    })),
  };
}

// ---- one Service ----

const SERVICE_FIELD_NAMES = [
  "namespace",
  "name",
  "clusterIP",
  "clusterIPs",
  "externalIPs",
  "loadBalancerIPs",
  "ports",
  "sessionAffinity",
  "affinityTimeoutSeconds",
  "sessionAffinityConfig",
  "externalTrafficPolicy",
  "internalTrafficPolicy",
];
// Sets built once: validation of a 10k-Service snapshot checks ~100k objects' keys.
const SERVICE_FIELDS: ReadonlySet<string> = new Set(SERVICE_FIELD_NAMES);
const FLAT_FIELDS: ReadonlySet<string> = new Set([...SERVICE_FIELD_NAMES, "endpoints"]);
const ENTRY_FIELDS: ReadonlySet<string> = new Set(["service", "endpoints"]);
const SNAPSHOT_FIELDS: ReadonlySet<string> = new Set(["services"]);
const PORT_FIELDS: ReadonlySet<string> = new Set([
  "name",
  "protocol",
  "port",
  "targetPort",
  "nodePort",
]);

function parseServiceFields(input: unknown, path: string, withEndpoints = false): Service {
  const obj = fields(input, path, withEndpoints ? FLAT_FIELDS : SERVICE_FIELDS);
  const namespace = obj.namespace === undefined
    ? "default"
    : dnsLabel(obj.namespace, join(path, "namespace"));
  if (obj.name === undefined) fail(join(path, "name"), "is required");
  const name = dnsLabel(obj.name, join(path, "name"));

  const clusterIPs = parseClusterIPs(obj, path);
  const externalIPs = ipList(obj.externalIPs, join(path, "externalIPs"));
  const loadBalancerIPs = ipList(obj.loadBalancerIPs, join(path, "loadBalancerIPs"));
  const seenIp = new Map<string, string>();
  for (
    const [field, ips] of [
      ["clusterIPs", clusterIPs],
      ["externalIPs", externalIPs],
      ["loadBalancerIPs", loadBalancerIPs],
    ] as const
  ) {
    ips.forEach((ip, i) => {
      const here = `${field}[${i}]`;
      const first = seenIp.get(ip);
      if (first !== undefined) {
        fail(join(path, here), `duplicate frontend: ${ip} is already listed as ${first}`);
      }
      seenIp.set(ip, here);
    });
  }

  const ports = parsePorts(obj.ports, join(path, "ports"));
  const sessionAffinity = oneOf(
    obj.sessionAffinity,
    join(path, "sessionAffinity"),
    ["None", "ClientIP"] as const,
    "None",
  );
  const affinityTimeoutSeconds = parseAffinityTimeout(obj, path, sessionAffinity);
  return {
    namespace,
    name,
    clusterIPs,
    externalIPs,
    loadBalancerIPs,
    ports,
    sessionAffinity,
    affinityTimeoutSeconds,
    externalTrafficPolicy: policy(obj.externalTrafficPolicy, join(path, "externalTrafficPolicy")),
    internalTrafficPolicy: policy(obj.internalTrafficPolicy, join(path, "internalTrafficPolicy")),
  };
}

function parseClusterIPs(obj: Record<string, unknown>, path: string): string[] {
  // Kubernetes: clusterIP is clusterIPs[0]; "None" means headless (no virtual IP at all).
  const single = obj.clusterIP === undefined
    ? undefined
    : obj.clusterIP === "None"
    ? "None"
    : frontendIp(obj.clusterIP, join(path, "clusterIP"));
  if (obj.clusterIPs === undefined) {
    return single === undefined || single === "None" ? [] : [single];
  }
  const listPath = join(path, "clusterIPs");
  if (!Array.isArray(obj.clusterIPs)) {
    fail(listPath, `must be a list of IPv4 addresses, got ${describe(obj.clusterIPs)}`);
  }
  const headless = obj.clusterIPs.length === 1 && obj.clusterIPs[0] === "None";
  const list = headless ? [] : ipList(obj.clusterIPs, listPath);
  if (single !== undefined) {
    const first = headless ? "None" : list[0];
    if (first !== single) {
      fail(join(path, "clusterIP"), `"${single}" differs from clusterIPs[0] ("${first ?? ""}")`);
    }
  }
  return list;
}

function parseAffinityTimeout(
  obj: Record<string, unknown>,
  path: string,
  affinity: "None" | "ClientIP",
): number {
  // Accepts the model's flat field and Kubernetes' sessionAffinityConfig.clientIP.timeoutSeconds.
  let value: unknown = obj.affinityTimeoutSeconds;
  let at = join(path, "affinityTimeoutSeconds");
  if (obj.sessionAffinityConfig !== undefined) {
    const cfgPath = join(path, "sessionAffinityConfig");
    const cfg = fields(obj.sessionAffinityConfig, cfgPath, new Set(["clientIP"]));
    const clientIP = fields(
      cfg.clientIP ?? {},
      join(cfgPath, "clientIP"),
      new Set(["timeoutSeconds"]),
    );
    if (clientIP.timeoutSeconds !== undefined) {
      if (value !== undefined && value !== clientIP.timeoutSeconds) {
        fail(cfgPath, "conflicts with affinityTimeoutSeconds (give one of them)");
      }
      value = clientIP.timeoutSeconds;
      at = join(cfgPath, "clientIP.timeoutSeconds");
    }
  }
  if (value === undefined) return DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  const seconds = integer(value, at);
  if (seconds < 1 || seconds > MAX_AFFINITY_TIMEOUT_SECONDS) {
    fail(at, `${seconds} is out of range 1..${MAX_AFFINITY_TIMEOUT_SECONDS} seconds`);
  }
  // Only the data plane's affinity map reads it, and only for ClientIP; stating one for
  // None is almost always a forgotten sessionAffinity, so it is refused rather than ignored.
  if (affinity === "None" && seconds !== DEFAULT_AFFINITY_TIMEOUT_SECONDS) {
    fail(at, 'is only valid with sessionAffinity "ClientIP"');
  }
  return seconds;
}

function parsePorts(input: unknown, path: string): ServicePort[] {
  if (input === undefined) fail(path, "is required (at least one port)");
  if (!Array.isArray(input)) fail(path, `must be a list of ports, got ${describe(input)}`);
  if (input.length === 0) fail(path, "must have at least one port");
  const ports = input.map((p, i) => parsePort(p, `${path}[${i}]`));
  const names = new Map<string, number>();
  const frontends = new Map<string, number>();
  const nodePorts = new Map<string, number>();
  ports.forEach((p, i) => {
    const at = `${path}[${i}]`;
    if (ports.length > 1 && p.name === "") {
      fail(join(at, "name"), "is required when a Service has more than one port");
    }
    const n = names.get(p.name);
    if (n !== undefined) {
      fail(join(at, "name"), `duplicate port name "${p.name}" (also ${path}[${n}])`);
    }
    names.set(p.name, i);
    const fe = `${p.port}/${p.protocol}`;
    const f = frontends.get(fe);
    if (f !== undefined) fail(join(at, "port"), `duplicate frontend: ${fe} is also ${path}[${f}]`);
    frontends.set(fe, i);
    if (p.nodePort !== undefined) {
      const np = `${p.nodePort}/${p.protocol}`;
      const o = nodePorts.get(np);
      if (o !== undefined) {
        fail(join(at, "nodePort"), `duplicate nodePort ${np} (also ${path}[${o}])`);
      }
      nodePorts.set(np, i);
    }
  });
  return ports;
}

function parsePort(input: unknown, path: string): ServicePort {
  const obj = fields(input, path, PORT_FIELDS);
  const name = obj.name === undefined || obj.name === ""
    ? ""
    : portName(obj.name, join(path, "name"));
  const protocol = parseProtocol(obj.protocol, join(path, "protocol"));
  if (obj.port === undefined) fail(join(path, "port"), "is required");
  const port = portNumber(obj.port, join(path, "port"));
  if (typeof obj.targetPort === "string") {
    fail(
      join(path, "targetPort"),
      `named target ports ("${obj.targetPort}") are not supported; give a number`,
    );
  }
  const targetPort = obj.targetPort === undefined
    ? port
    : portNumber(obj.targetPort, join(path, "targetPort"));
  const result: ServicePort = { name, protocol, port, targetPort };
  if (obj.nodePort === undefined) return result;
  return { ...result, nodePort: portNumber(obj.nodePort, join(path, "nodePort")) };
}

function parseProtocol(input: unknown, path: string): Protocol {
  if (input === undefined) return "TCP";
  if (input === "TCP" || input === "UDP") return input;
  if (typeof input === "string" && ["TCP", "UDP"].includes(input.toUpperCase())) {
    fail(path, `unknown protocol "${input}" (protocols are upper case: "${input.toUpperCase()}")`);
  }
  fail(path, `unknown protocol ${describe(input)} (supported: "TCP", "UDP")`);
}

function policy(input: unknown, path: string): TrafficPolicy {
  return oneOf(input, path, ["Cluster", "Local"] as const, "Cluster");
}

// ---- endpoints ----

const ENDPOINT_FIELDS: ReadonlySet<string> = new Set([
  "ip",
  "node",
  "port",
  "ports",
  "ready",
  "serving",
  "terminating",
  "conditions",
]);
const CONDITION_FIELDS: ReadonlySet<string> = new Set(["ready", "serving", "terminating"]);

function parseEndpoints(input: unknown, path: string, service: Service): Endpoint[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) fail(path, `must be a list of endpoints, got ${describe(input)}`);
  if (input.length > MAX_BACKENDS_PER_SERVICE) {
    fail(
      path,
      `${input.length} endpoints exceed the limit of ${MAX_BACKENDS_PER_SERVICE} backends per Service ` +
        `(the Maglev table has ${DEFAULT_MAGLEV_TABLE_SIZE} slots)`,
    );
  }
  const seen = new Map<string, number>();
  return input.map((item, i) => {
    const at = `${path}[${i}]`;
    const endpoint = parseEndpoint(item, at, service);
    const first = seen.get(endpoint.ip);
    if (first !== undefined) {
      fail(join(at, "ip"), `duplicate endpoint ${endpoint.ip} (also ${path}[${first}])`);
    }
    seen.set(endpoint.ip, i);
    return endpoint;
  });
}

function parseEndpoint(input: unknown, path: string, service: Service): Endpoint {
  const obj = fields(input, path, ENDPOINT_FIELDS);
  if (obj.ip === undefined) fail(join(path, "ip"), "is required");
  const ip = unicastIp(obj.ip, join(path, "ip"));
  if (obj.node === undefined) {
    fail(join(path, "node"), "is required (the node that hosts the endpoint)");
  }
  if (typeof obj.node !== "string" || obj.node === "") {
    fail(join(path, "node"), `must be a non-empty node name, got ${describe(obj.node)}`);
  }
  const ports = parseEndpointPorts(obj, path, service);
  const c = parseConditions(obj, path);
  if (ports === undefined) {
    return { ip, node: obj.node, ready: c.ready, serving: c.serving, terminating: c.terminating };
  }
  return {
    ip,
    node: obj.node,
    ports,
    ready: c.ready,
    serving: c.serving,
    terminating: c.terminating,
  };
}

function parseEndpointPorts(
  obj: Record<string, unknown>,
  path: string,
  service: Service,
): Record<string, number> | undefined {
  if (obj.port !== undefined) {
    // Shorthand for the common one-port Service.
    if (obj.ports !== undefined) {
      fail(join(path, "port"), 'give either "port" or "ports", not both');
    }
    if (service.ports.length !== 1) {
      fail(
        join(path, "port"),
        'is ambiguous with several Service ports; use "ports": {"<port name>": number}',
      );
    }
    return { [service.ports[0].name]: portNumber(obj.port, join(path, "port")) };
  }
  if (obj.ports === undefined) return undefined;
  const at = join(path, "ports");
  if (!isObject(obj.ports)) {
    fail(at, `must map Service port names to numbers, got ${describe(obj.ports)}`);
  }
  const names = new Set(service.ports.map((p) => p.name));
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(obj.ports)) {
    if (!names.has(name)) {
      fail(
        `${at}.${name || '""'}`,
        `the Service has no port named "${name}" (ports: ${
          [...names].map((n) => `"${n}"`).join(", ")
        })`,
      );
    }
    out[name] = portNumber(value, `${at}.${name || '""'}`);
  }
  return out;
}

function parseConditions(
  obj: Record<string, unknown>,
  path: string,
): Pick<Endpoint, "ready" | "serving" | "terminating"> {
  // EndpointSlice shape ("conditions": {…}) or flat fields, not both for the same condition.
  let raw: Record<string, unknown> = obj;
  let at = path;
  if (obj.conditions !== undefined) {
    at = join(path, "conditions");
    raw = fields(obj.conditions, at, CONDITION_FIELDS);
    for (const c of ["ready", "serving", "terminating"]) {
      if (obj[c] !== undefined) fail(join(path, c), 'is given both here and in "conditions"');
    }
  }
  const terminating = condition(raw.terminating, at, "terminating") ?? false;
  const readyIn = condition(raw.ready, at, "ready");
  const serving = condition(raw.serving, at, "serving") ?? (terminating ? true : readyIn ?? true);
  const ready = readyIn ?? (serving && !terminating);
  // Kubernetes defines ready = serving && !terminating; anything else is contradictory.
  if (ready && terminating) fail(join(at, "ready"), "cannot be true for a terminating endpoint");
  if (ready && !serving) fail(join(at, "ready"), "cannot be true when serving is false");
  if (!terminating && serving !== ready) {
    fail(join(at, "serving"), "must equal ready unless the endpoint is terminating");
  }
  return { ready, serving, terminating };
}

function condition(v: unknown, path: string, name: string): boolean | undefined {
  if (v === undefined || typeof v === "boolean") return v;
  fail(join(path, name), `must be true or false, got ${describe(v)}`);
}

// ---- field helpers ----

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fields(
  input: unknown,
  path: string,
  allowed: ReadonlySet<string>,
): Record<string, unknown> {
  if (!isObject(input)) fail(path, `must be an object, got ${describe(input)}`);
  for (const key in input) {
    if (!allowed.has(key)) {
      fail(join(path, key), `unknown field (allowed: ${[...allowed].join(", ")})`);
    }
  }
  return input;
}

function join(path: string, field: string): string {
  return path === "" ? field : `${path}.${field}`;
}

function fail(path: string, problem: string): never {
  throw new ServiceValidationError(path, problem);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "string") return `"${v.length > 40 ? v.slice(0, 40) + "…" : v}"`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}

function integer(v: unknown, path: string): number {
  if (typeof v !== "number" || !Number.isInteger(v)) {
    fail(path, `must be an integer, got ${describe(v)}`);
  }
  return v;
}

function portNumber(v: unknown, path: string): number {
  const n = integer(v, path);
  if (n < 1 || n > 65535) fail(path, `${n} is out of range 1..65535`);
  return n;
}

function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
  fail(path, `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${describe(v)}`);
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function dnsLabel(v: unknown, path: string): string {
  if (typeof v !== "string" || v === "") {
    fail(path, `must be a non-empty string, got ${describe(v)}`);
  }
  if (v.length > 63 || !DNS_LABEL.test(v)) {
    fail(path, `"${v}" is not a DNS label (lower-case letters, digits and "-", at most 63)`);
  }
  return v;
}

function portName(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, `must be a string, got ${describe(v)}`);
  if (v.length > 63 || !DNS_LABEL.test(v)) {
    fail(path, `"${v}" is not a valid port name (lower-case letters, digits and "-")`);
  }
  return v;
}

function ipList(v: unknown, path: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(path, `must be a list of IPv4 addresses, got ${describe(v)}`);
  return v.map((ip, i) => frontendIp(ip, `${path}[${i}]`));
}

/** A unicast IPv4 address usable as a frontend or backend, in canonical text. */
function unicastIp(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, `must be an IPv4 address string, got ${describe(v)}`);
  const addr = tryParseIpv4(v);
  if (addr === undefined) fail(path, `"${v}" is not an IPv4 address`);
  const first = addr >>> 24;
  if (addr === 0) fail(path, `${v} is the unspecified address`);
  if (addr === 0xffffffff) fail(path, `${v} is the broadcast address`);
  if (first === 0) fail(path, `${v} is in 0.0.0.0/8 ("this network")`);
  if (first === 127) fail(path, `${v} is a loopback address`);
  if (first >= 224 && first < 240) fail(path, `${v} is a multicast address`);
  if (first >= 240) fail(path, `${v} is a reserved (class E) address`);
  return v;
}

function frontendIp(v: unknown, path: string): string {
  const ip = unicastIp(v, path);
  if (ip.startsWith("169.254.")) fail(path, `${ip} is link-local and cannot be a Service address`);
  return ip;
}
