/**
 * The agent's configuration: /etc/skiff/config.json (path by flag), with flags overriding it.
 * Every field is validated at start; a message names the field and the problem; unknown fields
 * are refused (a typo must not silently fall back to a default).
 * @module
 */
import { parseCidr, tryParseIpv4 } from "./net/ipv4.ts";

/** Which Service data plane to run. */
export type DataplaneChoice = "auto" | "bpf" | "iptables" | "ipvs";

/** How the uplink (VXLAN underlay interface) is chosen. */
export interface UplinkSelector {
  readonly iface?: string;
  readonly ip?: string;
  readonly cidr?: string;
}

/** The subnet store. */
export type StoreConfig =
  | { readonly type: "embedded"; readonly dir: string }
  | { readonly type: "etcd"; readonly endpoints: readonly string[]; readonly prefix: string };

/** flannel's net-conf.json, used to initialise an empty store. */
export interface NetworkConfigInput {
  readonly [key: string]: unknown;
}

/** The validated configuration. */
export interface AgentConfig {
  readonly nodeName: string;
  /** Run for this network namespace (a path like /run/netns/X); "" = the agent's own. */
  readonly netns: string;
  readonly stateDir: string;
  /** bpffs dir of this instance's pins. */
  readonly pinDir: string;
  /** cgroup v2 path the socket LB hooks attach to. */
  readonly cgroupPath: string;
  readonly uplink: UplinkSelector;
  readonly network?: NetworkConfigInput;
  readonly store: StoreConfig;
  readonly dataplane: DataplaneChoice;
  readonly servicesFile: string;
  readonly ipMasq: boolean;
  readonly cni: {
    readonly confDir: string;
    readonly binDir: string;
    readonly subnetFile: string;
    readonly bridge: string;
    /** Where the plugin saves each container's delegate (for DEL). */
    readonly dataDir: string;
    /** host-local's allocation dir ("" = host-local's default /var/lib/cni/networks). */
    readonly ipamDataDir: string;
    /** The agent serves CNI requests here so the plugin skips Deno start-up ("" = off). */
    readonly socket: string;
  };
  /** host:port for /healthz and /readyz ("" disables). */
  readonly healthAddress: string;
  /** host:port for /metrics ("" disables). */
  readonly metricsAddress: string;
  readonly log: { readonly level: LogLevelName; readonly format: "text" | "json" };
  readonly resyncSeconds: number;
}

/** Log levels in increasing severity. */
export type LogLevelName = "debug" | "info" | "warn" | "error";

/** A configuration problem: `field` is the dotted path, `problem` says what is wrong. */
export class ConfigError extends Error {
  constructor(readonly field: string, readonly problem: string) {
    super(`config field "${field}": ${problem}`);
    this.name = "ConfigError";
  }
}

/** Defaults for a production node. */
export const DEFAULT_CONFIG: AgentConfig = {
  nodeName: "",
  netns: "",
  stateDir: "/var/lib/skiff",
  pinDir: "/sys/fs/bpf/skiff/default",
  cgroupPath: "/sys/fs/cgroup/unified",
  uplink: {},
  store: { type: "embedded", dir: "/var/lib/skiff/store" },
  dataplane: "auto",
  servicesFile: "/var/lib/skiff/services.json",
  ipMasq: true,
  cni: {
    confDir: "/etc/cni/net.d",
    binDir: "/opt/cni/bin",
    subnetFile: "/run/flannel/subnet.env",
    bridge: "cni0",
    dataDir: "/var/lib/cni/skiff",
    ipamDataDir: "",
    socket: "/run/skiff/cni.sock",
  },
  healthAddress: "0.0.0.0:10256",
  metricsAddress: "127.0.0.1:10249",
  log: { level: "info", format: "text" },
  resyncSeconds: 30,
};

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function onlyKnown(obj: Json, path: string, known: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) {
      const where = path ? `${path}.${key}` : key;
      throw new ConfigError(where, `unknown field (known: ${known.join(", ")})`);
    }
  }
}

function str(obj: Json, key: string, path: string, fallback: string, opts: {
  nonEmpty?: boolean;
  absolutePath?: boolean;
  pattern?: [RegExp, string];
} = {}): string {
  const field = path ? `${path}.${key}` : key;
  const value = obj[key];
  if (value === undefined) return fallback;
  if (typeof value !== "string") {
    throw new ConfigError(field, `must be a string, got ${typeof value}`);
  }
  if (opts.nonEmpty && value === "") throw new ConfigError(field, "must not be empty");
  if (opts.absolutePath && value !== "" && !value.startsWith("/")) {
    throw new ConfigError(field, `must be an absolute path, got "${value}"`);
  }
  if (opts.pattern && value !== "" && !opts.pattern[0].test(value)) {
    throw new ConfigError(field, `${opts.pattern[1]}, got "${value}"`);
  }
  return value;
}

function oneOf<T extends string>(
  obj: Json,
  key: string,
  path: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const value = str(obj, key, path, fallback);
  if (!allowed.includes(value as T)) {
    throw new ConfigError(
      path ? `${path}.${key}` : key,
      `must be one of ${allowed.join(", ")}, got "${value}"`,
    );
  }
  return value as T;
}

function bool(obj: Json, key: string, path: string, fallback: boolean): boolean {
  const value = obj[key];
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new ConfigError(
      path ? `${path}.${key}` : key,
      `must be true or false, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function section(obj: Json, key: string): Json {
  const value = obj[key];
  if (value === undefined) return {};
  if (!isObject(value)) throw new ConfigError(key, "must be an object");
  return value;
}

const HOST_PORT = /^(\d{1,3}(\.\d{1,3}){3}|localhost|\[::1?\]):(\d{1,5})$/;

function address(obj: Json, key: string, path: string, fallback: string): string {
  const field = path ? `${path}.${key}` : key;
  const value = str(obj, key, path, fallback);
  if (value === "") return value;
  const m = HOST_PORT.exec(value);
  if (!m) {
    throw new ConfigError(field, `must be "host:port" (e.g. 127.0.0.1:10249), got "${value}"`);
  }
  const host = value.slice(0, value.lastIndexOf(":"));
  if (/^\d/.test(host) && tryParseIpv4(host) === undefined) {
    throw new ConfigError(field, `"${host}" is not an IPv4 address`);
  }
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new ConfigError(field, `port ${port} is outside 1..65535`);
  return value;
}

const IFNAME: [RegExp, string] = [
  /^[A-Za-z0-9_.@-]{1,15}$/,
  "must be an interface name (1-15 characters)",
];
const NODE_NAME: [RegExp, string] = [
  /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
  "must be a lowercase DNS name (a-z, 0-9, '-', '.')",
];

function parseUplink(raw: Json): UplinkSelector {
  const up = section(raw, "uplink");
  onlyKnown(up, "uplink", ["iface", "ip", "cidr"]);
  const iface = str(up, "iface", "uplink", "", { pattern: IFNAME });
  const ip = str(up, "ip", "uplink", "");
  const cidr = str(up, "cidr", "uplink", "");
  if (ip && tryParseIpv4(ip) === undefined) {
    throw new ConfigError("uplink.ip", `"${ip}" is not an IPv4 address`);
  }
  if (cidr) {
    try {
      parseCidr(cidr, { strict: false });
    } catch (error) {
      throw new ConfigError("uplink.cidr", (error as Error).message);
    }
  }
  if ([iface, ip, cidr].filter(Boolean).length > 1) {
    throw new ConfigError("uplink", "set only one of iface, ip, cidr");
  }
  return { ...(iface && { iface }), ...(ip && { ip }), ...(cidr && { cidr }) };
}

function parseStore(raw: Json, stateDir: string): StoreConfig {
  const store = section(raw, "store");
  const type = oneOf(store, "type", "store", ["embedded", "etcd"] as const, "embedded");
  if (type === "embedded") {
    onlyKnown(store, "store", ["type", "dir"]);
    return { type, dir: str(store, "dir", "store", `${stateDir}/store`, { absolutePath: true }) };
  }
  onlyKnown(store, "store", ["type", "endpoints", "prefix"]);
  const endpoints = store.endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw new ConfigError("store.endpoints", "must be a non-empty list of http://host:port URLs");
  }
  endpoints.forEach((e, i) => {
    if (typeof e !== "string" || !/^https?:\/\/[^/\s]+\/?$/.test(e)) {
      throw new ConfigError(
        `store.endpoints[${i}]`,
        `must be an http(s)://host:port URL, got ${JSON.stringify(e)}`,
      );
    }
  });
  const prefix = str(store, "prefix", "store", "/coreos.com/network", {
    pattern: [/^\/[^\s]*[^/\s]$/, "must start with / and not end with /"],
  });
  return { type, endpoints: endpoints as string[], prefix };
}

/** Validates a parsed config file (and defaults what it leaves out). */
export function parseConfig(raw: unknown): AgentConfig {
  if (!isObject(raw)) throw new ConfigError("(root)", "the config must be a JSON object");
  onlyKnown(raw, "", [
    "nodeName",
    "netns",
    "stateDir",
    "pinDir",
    "cgroupPath",
    "uplink",
    "network",
    "store",
    "dataplane",
    "servicesFile",
    "ipMasq",
    "cni",
    "healthAddress",
    "metricsAddress",
    "log",
    "resyncSeconds",
  ]);
  const d = DEFAULT_CONFIG;
  const stateDir = str(raw, "stateDir", "", d.stateDir, { absolutePath: true, nonEmpty: true });
  const pinDir = str(raw, "pinDir", "", d.pinDir, { absolutePath: true, nonEmpty: true });
  if (!pinDir.startsWith("/sys/fs/bpf/")) {
    throw new ConfigError("pinDir", `must be under /sys/fs/bpf/ (a bpffs), got "${pinDir}"`);
  }
  const cni = section(raw, "cni");
  onlyKnown(cni, "cni", [
    "confDir",
    "binDir",
    "subnetFile",
    "bridge",
    "dataDir",
    "ipamDataDir",
    "socket",
  ]);
  const logSection = section(raw, "log");
  onlyKnown(logSection, "log", ["level", "format"]);
  const network = raw.network;
  if (network !== undefined && !isObject(network)) {
    throw new ConfigError("network", "must be an object");
  }
  const resync = raw.resyncSeconds ?? d.resyncSeconds;
  if (typeof resync !== "number" || !Number.isInteger(resync) || resync < 1 || resync > 3600) {
    throw new ConfigError(
      "resyncSeconds",
      `must be an integer from 1 to 3600, got ${JSON.stringify(resync)}`,
    );
  }
  return {
    nodeName: str(raw, "nodeName", "", d.nodeName, { pattern: NODE_NAME }),
    netns: str(raw, "netns", "", d.netns, { absolutePath: true }),
    stateDir,
    pinDir,
    cgroupPath: str(raw, "cgroupPath", "", d.cgroupPath, { absolutePath: true, nonEmpty: true }),
    uplink: parseUplink(raw),
    ...(network !== undefined && { network: network as NetworkConfigInput }),
    store: parseStore(raw, stateDir),
    dataplane: oneOf(
      raw,
      "dataplane",
      "",
      ["auto", "bpf", "iptables", "ipvs"] as const,
      d.dataplane,
    ),
    servicesFile: str(raw, "servicesFile", "", `${stateDir}/services.json`, { absolutePath: true }),
    ipMasq: bool(raw, "ipMasq", "", d.ipMasq),
    cni: {
      confDir: str(cni, "confDir", "cni", d.cni.confDir, { absolutePath: true, nonEmpty: true }),
      binDir: str(cni, "binDir", "cni", d.cni.binDir, { absolutePath: true, nonEmpty: true }),
      subnetFile: str(cni, "subnetFile", "cni", d.cni.subnetFile, {
        absolutePath: true,
        nonEmpty: true,
      }),
      bridge: str(cni, "bridge", "cni", d.cni.bridge, { pattern: IFNAME, nonEmpty: true }),
      dataDir: str(cni, "dataDir", "cni", d.cni.dataDir, { absolutePath: true, nonEmpty: true }),
      ipamDataDir: str(cni, "ipamDataDir", "cni", d.cni.ipamDataDir, { absolutePath: true }),
      socket: str(cni, "socket", "cni", d.cni.socket, { absolutePath: true }),
    },
    healthAddress: address(raw, "healthAddress", "", d.healthAddress),
    metricsAddress: address(raw, "metricsAddress", "", d.metricsAddress),
    log: {
      level: oneOf(
        logSection,
        "level",
        "log",
        ["debug", "info", "warn", "error"] as const,
        d.log.level,
      ),
      format: oneOf(logSection, "format", "log", ["text", "json"] as const, d.log.format),
    },
    resyncSeconds: resync,
  };
}

/** Command-line flags that override the file (kebab-case flag → config field). */
export const CONFIG_FLAGS = {
  "node-name": "nodeName",
  "netns": "netns",
  "state-dir": "stateDir",
  "pin-dir": "pinDir",
  "cgroup": "cgroupPath",
  "iface": "uplink.iface",
  "dataplane": "dataplane",
  "services-file": "servicesFile",
  "health-address": "healthAddress",
  "metrics-address": "metricsAddress",
  "log-level": "log.level",
  "log-format": "log.format",
} as const;

/** Applies flag values (already strings) onto a raw config object before validation. */
export function applyFlags(
  raw: Json,
  flags: Partial<Record<keyof typeof CONFIG_FLAGS, string>>,
): Json {
  const out: Json = structuredClone(raw);
  for (const [flag, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    const path = CONFIG_FLAGS[flag as keyof typeof CONFIG_FLAGS];
    const [head, tail] = path.split(".");
    if (tail) {
      const inner = isObject(out[head]) ? out[head] as Json : {};
      out[head] = { ...inner, [tail]: value };
      if (head === "uplink") out[head] = { [tail]: value };
    } else {
      out[head] = value;
    }
  }
  return out;
}

/** Reads and validates a config file; a missing file at the default path means defaults. */
export async function loadConfig(
  path: string,
  flags: Partial<Record<keyof typeof CONFIG_FLAGS, string>> = {},
  options: { required?: boolean } = {},
): Promise<AgentConfig> {
  let raw: unknown = {};
  try {
    const text = await Deno.readTextFile(path);
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new ConfigError("(file)", `${path} is not valid JSON: ${(error as Error).message}`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound) || options.required) {
      if (error instanceof ConfigError) throw error;
      throw new ConfigError("(file)", `cannot read ${path}: ${(error as Error).message}`);
    }
  }
  const config = parseConfig(isObject(raw) ? applyFlags(raw, flags) : raw);
  return config.nodeName ? config : { ...config, nodeName: Deno.hostname().toLowerCase() };
}
