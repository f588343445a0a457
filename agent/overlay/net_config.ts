/**
 * flannel's net-conf.json (`Network`, `SubnetLen`, `SubnetMin`/`SubnetMax`, `Backend`) parsed
 * and validated with flannel's rules and defaults; errors name the field and the problem.
 * @module
 */
import {
  type Cidr,
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  parseCidr,
  prefixMask,
  tryParseIpv4,
} from "../net/ipv4.ts";

/** The VXLAN backend settings (flannel's `Backend` object with `Type: "vxlan"`). */
export interface VxlanBackend {
  readonly type: "vxlan";
  /** VXLAN network identifier, 1..16777215 (default 1); the device is `flannel.<vni>`. */
  readonly vni: number;
  /** UDP destination port (default 8472, the Linux kernel's and flannel's). */
  readonly port: number;
  /** Route straight to peers on the same L2 subnet instead of encapsulating (default false). */
  readonly directRouting: boolean;
  /** Explicit VXLAN MTU; default: the uplink MTU − 50. */
  readonly mtu?: number;
}

/** A validated network config with flannel's defaults filled in. */
export interface NetConfig {
  readonly network: Cidr;
  readonly subnetLen: number;
  /** First and last subnet base address a node may lease (host order). */
  readonly subnetMin: number;
  readonly subnetMax: number;
  readonly backend: VxlanBackend;
}

/** A refused network config; `field` is the net-conf.json field at fault. */
export class NetConfigError extends Error {
  constructor(readonly field: string, readonly problem: string) {
    super(`network config field "${field}": ${problem}`);
    this.name = "NetConfigError";
  }
}

/** Options for {@linkcode parseNetConfig}. */
export interface NetConfigOptions {
  /**
   * Prefixes the pod network must not overlap, with a label for the message (e.g. the node's
   * underlay subnet, the Service CIDR).
   */
  readonly reserved?: readonly { readonly cidr: Cidr; readonly what: string }[];
}

const TOP_FIELDS = ["Network", "SubnetLen", "SubnetMin", "SubnetMax", "Backend", "EnableIPv4"];
// Fields flannel knows but skiff does not implement: refused with "not supported", not "unknown".
const UNSUPPORTED_TOP = [
  "EnableIPv6",
  "IPv6Network",
  "IPv6SubnetLen",
  "IPv6SubnetMin",
  "IPv6SubnetMax",
  "EnableNFTables",
];
const BACKEND_FIELDS = ["Type", "VNI", "Port", "DirectRouting", "MTU"];
const UNSUPPORTED_BACKEND = ["GBP", "Learning", "MacPrefix"];
const KNOWN_BACKEND_TYPES = [
  "udp",
  "host-gw",
  "ipip",
  "ipsec",
  "wireguard",
  "alloc",
  "extension",
  "alivpc",
  "tencent-vpc",
  "gce",
  "aws-vpc",
];

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkFields(obj: Json, where: string, known: string[], unsupported: string[]): void {
  for (const key of Object.keys(obj)) {
    const field = where ? `${where}.${key}` : key;
    if (unsupported.includes(key)) {
      // flannel's zero values are harmless; anything else asks for a feature skiff lacks.
      const v = obj[key];
      if (v === false || v === null || v === 0 || v === "") continue;
      throw new NetConfigError(field, "is a flannel option skiff does not support");
    }
    if (!known.includes(key)) {
      throw new NetConfigError(field, `unknown field (known: ${known.join(", ")})`);
    }
  }
}

function integer(
  obj: Json,
  key: string,
  field: string,
  min: number,
  max: number,
): number | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new NetConfigError(field, `must be an integer, got ${JSON.stringify(v)}`);
  }
  if (v < min || v > max) throw new NetConfigError(field, `${v} is out of range ${min}..${max}`);
  return v;
}

function address(obj: Json, key: string, field: string): number | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  const parsed = typeof v === "string" ? tryParseIpv4(v) : undefined;
  if (parsed === undefined) {
    throw new NetConfigError(field, `must be an IPv4 address, got ${JSON.stringify(v)}`);
  }
  return parsed;
}

function parseBackend(raw: unknown): VxlanBackend {
  if (raw === undefined) {
    // flannel defaults to "udp", which skiff does not implement: say so rather than guess.
    throw new NetConfigError("Backend", 'is missing (skiff needs {"Type": "vxlan"})');
  }
  if (!isObject(raw)) throw new NetConfigError("Backend", "must be an object");
  const type = raw.Type;
  if (type !== "vxlan") {
    if (typeof type === "string" && KNOWN_BACKEND_TYPES.includes(type)) {
      throw new NetConfigError("Backend.Type", `"${type}" is not supported (only "vxlan")`);
    }
    throw new NetConfigError(
      "Backend.Type",
      `unknown backend type ${JSON.stringify(type)} (only "vxlan")`,
    );
  }
  checkFields(raw, "Backend", BACKEND_FIELDS, UNSUPPORTED_BACKEND);
  const vni = integer(raw, "VNI", "Backend.VNI", 1, 16777215) ?? 1;
  const port = integer(raw, "Port", "Backend.Port", 1, 65535) ?? 8472;
  const direct = raw.DirectRouting ?? false;
  if (typeof direct !== "boolean") {
    throw new NetConfigError("Backend.DirectRouting", "must be true or false");
  }
  // 68 is IPv4's minimum MTU; 65535 - 50 leaves room for the VXLAN header on any uplink.
  const mtu = integer(raw, "MTU", "Backend.MTU", 68, 65485);
  return { type: "vxlan", vni, port, directRouting: direct, ...(mtu !== undefined && { mtu }) };
}

/**
 * Parses and validates a net-conf.json (text or parsed object). Defaults follow flannel:
 * SubnetLen 24 when the Network is /22 or larger (else prefix + 2), SubnetMin skips the first
 * subnet, SubnetMax is the last one.
 */
export function parseNetConfig(input: string | unknown, options: NetConfigOptions = {}): NetConfig {
  let raw: unknown = input;
  if (typeof input === "string") {
    try {
      raw = JSON.parse(input);
    } catch (error) {
      throw new NetConfigError("(document)", `not valid JSON: ${(error as Error).message}`);
    }
  }
  if (!isObject(raw)) throw new NetConfigError("(document)", "must be a JSON object");
  checkFields(raw, "", TOP_FIELDS, UNSUPPORTED_TOP);
  if (raw.EnableIPv4 === false) {
    throw new NetConfigError("EnableIPv4", "must be true: skiff's overlay is IPv4");
  }
  if (raw.Network === undefined) throw new NetConfigError("Network", "is required");
  if (typeof raw.Network !== "string") throw new NetConfigError("Network", "must be a CIDR string");
  let network: Cidr;
  try {
    network = parseCidr(raw.Network);
  } catch (error) {
    throw new NetConfigError("Network", (error as Error).message);
  }
  if (network.prefix > 28) {
    throw new NetConfigError("Network", `/${network.prefix} is too small (at most /28)`);
  }
  let subnetLen = integer(raw, "SubnetLen", "SubnetLen", 0, 32);
  if (subnetLen === undefined || subnetLen === 0) {
    subnetLen = network.prefix <= 22 ? 24 : network.prefix + 2;
  } else {
    if (subnetLen <= network.prefix) {
      throw new NetConfigError(
        "SubnetLen",
        `/${subnetLen} must be longer than the Network prefix /${network.prefix}`,
      );
    }
    if (subnetLen > 30) {
      throw new NetConfigError("SubnetLen", `/${subnetLen} leaves no room for pods (at most /30)`);
    }
    if (subnetLen < network.prefix + 2) {
      // flannel skips the first subnet, so the network must hold at least four.
      throw new NetConfigError(
        "SubnetLen",
        `/${subnetLen} gives the /${network.prefix} Network fewer than four subnets (use /${
          network.prefix + 2
        } or longer)`,
      );
    }
  }
  const size = 2 ** (32 - subnetLen);
  const mask = prefixMask(subnetLen);
  const subnetMin = address(raw, "SubnetMin", "SubnetMin") ?? network.base + size;
  const subnetMax = address(raw, "SubnetMax", "SubnetMax") ??
    network.base + 2 ** (32 - network.prefix) - size;
  for (const [field, value] of [["SubnetMin", subnetMin], ["SubnetMax", subnetMax]] as const) {
    if (!cidrContains(network, value)) {
      throw new NetConfigError(field, `${formatIpv4(value)} is outside ${formatCidr(network)}`);
    }
    if (((value & mask) >>> 0) !== value) {
      throw new NetConfigError(field, `${formatIpv4(value)} is not on a /${subnetLen} boundary`);
    }
  }
  if (subnetMin > subnetMax) {
    throw new NetConfigError(
      "SubnetMin",
      `${formatIpv4(subnetMin)} is above SubnetMax ${formatIpv4(subnetMax)}`,
    );
  }
  for (const reserved of options.reserved ?? []) {
    if (cidrsOverlap(network, reserved.cidr)) {
      throw new NetConfigError(
        "Network",
        `${formatCidr(network)} overlaps ${reserved.what} ${formatCidr(reserved.cidr)}`,
      );
    }
  }
  return { network, subnetLen, subnetMin, subnetMax, backend: parseBackend(raw.Backend) };
}

/** The config as flannel's net-conf.json object (defaults written out). */
export function netConfigToJson(config: NetConfig): Json {
  const backend: Json = { Type: "vxlan", VNI: config.backend.vni, Port: config.backend.port };
  if (config.backend.directRouting) backend.DirectRouting = true;
  if (config.backend.mtu !== undefined) backend.MTU = config.backend.mtu;
  return {
    Network: formatCidr(config.network),
    SubnetLen: config.subnetLen,
    SubnetMin: formatIpv4(config.subnetMin),
    SubnetMax: formatIpv4(config.subnetMax),
    Backend: backend,
  };
}

/** True when a subnet is one this config could hand out (right length, within Min..Max). */
export function subnetFitsConfig(config: NetConfig, subnet: Cidr): boolean {
  return subnet.prefix === config.subnetLen && subnet.base >= config.subnetMin &&
    subnet.base <= config.subnetMax;
}
