/**
 * Refuses malformed Service snapshots before any kernel state is touched: every error names
 * the Service and the field (`services[2] (default/web).ports[0].port: 70000 is not a port`).
 * @module
 */
import { tryParseIpv4 } from "../net/ipv4.ts";
import { parseSnapshot } from "../lb/validate.ts";
import { type Endpoint, serviceKey, type ServicePort, type ServiceSnapshot } from "../lb/model.ts";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const PORT_NAME = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$/;

function isPort(value: unknown): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/**
 * Throws naming the first bad field; returns the snapshot when it is sound. The shared model
 * validation (agent/lb/validate.ts: cross-Service frontends, backend limits) runs last, so
 * every data plane refuses the same input.
 */
export function checkSnapshot(snapshot: ServiceSnapshot): ServiceSnapshot {
  checkFields(snapshot);
  parseSnapshot(snapshot);
  return snapshot;
}

function checkFields(snapshot: ServiceSnapshot): void {
  if (!snapshot || !Array.isArray(snapshot.services)) {
    throw new TypeError("snapshot.services must be an array");
  }
  const keys = new Set<string>();
  const nodePorts = new Map<string, string>();
  snapshot.services.forEach((entry, i) => {
    const s = entry?.service;
    if (!s) throw new TypeError(`services[${i}].service is missing`);
    const where = `services[${i}] (${s.namespace}/${s.name})`;
    const fail = (field: string, problem: string): never => {
      throw new TypeError(`${where}.${field}: ${problem}`);
    };
    if (typeof s.namespace !== "string" || !DNS_LABEL.test(s.namespace)) {
      fail("namespace", `${JSON.stringify(s.namespace)} is not a DNS name`);
    }
    if (typeof s.name !== "string" || !DNS_LABEL.test(s.name)) {
      fail("name", `${JSON.stringify(s.name)} is not a DNS name`);
    }
    const key = serviceKey(s);
    if (keys.has(key)) fail("name", "duplicate Service");
    keys.add(key);
    for (const field of ["clusterIPs", "externalIPs", "loadBalancerIPs"] as const) {
      if (!Array.isArray(s[field])) fail(field, "must be an array");
      (s[field] as readonly unknown[]).forEach((ip: unknown, j: number) => {
        if (typeof ip !== "string" || tryParseIpv4(ip) === undefined) {
          fail(`${field}[${j}]`, `${JSON.stringify(ip)} is not an IPv4 address`);
        }
      });
    }
    if (!Array.isArray(s.ports)) fail("ports", "must be an array");
    const names = new Set<string>();
    const fronts = new Set<string>();
    s.ports.forEach((p: ServicePort, j: number) => {
      const at = `ports[${j}]`;
      if (typeof p.name !== "string" || !PORT_NAME.test(p.name)) {
        fail(`${at}.name`, `${JSON.stringify(p.name)} is not a port name`);
      }
      if (names.has(p.name)) fail(`${at}.name`, `duplicate port name "${p.name}"`);
      names.add(p.name);
      if (p.protocol !== "TCP" && p.protocol !== "UDP") {
        fail(`${at}.protocol`, `${JSON.stringify(p.protocol)} is not TCP or UDP`);
      }
      if (!isPort(p.port)) fail(`${at}.port`, `${p.port} is not a port (1-65535)`);
      if (!isPort(p.targetPort)) {
        fail(`${at}.targetPort`, `${p.targetPort} is not a port (1-65535)`);
      }
      if (p.nodePort !== undefined) {
        if (!isPort(p.nodePort)) fail(`${at}.nodePort`, `${p.nodePort} is not a port (1-65535)`);
        const np = `${p.protocol}/${p.nodePort}`;
        const owner = nodePorts.get(np);
        if (owner !== undefined) fail(`${at}.nodePort`, `${np} is already used by ${owner}`);
        nodePorts.set(np, key);
      }
      const front = `${p.protocol}/${p.port}`;
      if (fronts.has(front)) fail(`${at}.port`, `duplicate ${front}`);
      fronts.add(front);
    });
    if (s.sessionAffinity !== "None" && s.sessionAffinity !== "ClientIP") {
      fail("sessionAffinity", `${JSON.stringify(s.sessionAffinity)} is not None or ClientIP`);
    }
    if (
      s.sessionAffinity === "ClientIP" &&
      !(Number.isInteger(s.affinityTimeoutSeconds) && s.affinityTimeoutSeconds >= 1 &&
        s.affinityTimeoutSeconds <= 86400)
    ) {
      fail("affinityTimeoutSeconds", `${s.affinityTimeoutSeconds} is not 1-86400`);
    }
    for (const field of ["externalTrafficPolicy", "internalTrafficPolicy"] as const) {
      if (s[field] !== "Cluster" && s[field] !== "Local") {
        fail(field, `${JSON.stringify(s[field])} is not Cluster or Local`);
      }
    }
    if (!Array.isArray(entry.endpoints)) fail("endpoints", "must be an array");
    entry.endpoints.forEach((e: Endpoint, j: number) => {
      const at = `endpoints[${j}]`;
      if (typeof e.ip !== "string" || tryParseIpv4(e.ip) === undefined) {
        fail(`${at}.ip`, `${JSON.stringify(e.ip)} is not an IPv4 address`);
      }
      if (typeof e.node !== "string") fail(`${at}.node`, "must be a string");
      for (const flag of ["ready", "serving", "terminating"] as const) {
        if (typeof e[flag] !== "boolean") fail(`${at}.${flag}`, "must be a boolean");
      }
      for (const [name, port] of Object.entries(e.ports ?? {})) {
        if (!isPort(port)) fail(`${at}.ports.${name}`, `${port} is not a port (1-65535)`);
      }
    });
  });
}
