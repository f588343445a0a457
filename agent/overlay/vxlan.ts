/**
 * The node's local devices, converged: the VXLAN device flannel.<VNI> (id, dstport, local IP,
 * uplink, nolearning, MTU, a MAC that survives restarts, address `<subnet>.0/32`) and the cni0
 * bridge (`<subnet>.1/<len>`). An incompatible device is recreated; a right one is left alone.
 * @module
 */
import {
  type AddrInfo,
  iprouteBatch,
  iprouteJson,
  type LinkInfo,
  readLink,
} from "../net/iproute.ts";

/** What the VXLAN device must be. */
export interface VxlanSpec {
  /** flannel.<VNI>. */
  readonly name: string;
  readonly vni: number;
  readonly port: number;
  /** The node's public IP (VXLAN source). */
  readonly localIp: string;
  /** The uplink interface name. */
  readonly uplink: string;
  readonly mtu: number;
  readonly mac: string;
  /** "<subnet>.0/32". */
  readonly address: string;
}

/** What an ensure call changed ("" entries never; an empty list means all was right). */
export interface EnsureReport {
  readonly created: boolean;
  /** iproute2 commands issued (for the log). */
  readonly commands: readonly string[];
}

/** Why an existing VXLAN device cannot be kept, or undefined when it fits. */
export function vxlanIncompatibility(link: LinkInfo, spec: VxlanSpec): string | undefined {
  const kind = link.linkinfo?.info_kind;
  if (kind !== "vxlan") return `it is a ${kind ?? "plain"} device, not vxlan`;
  const d = link.linkinfo?.info_data ?? {};
  if (d.id !== spec.vni) return `VNI ${d.id} ≠ ${spec.vni}`;
  if (d.port !== spec.port) return `dstport ${d.port} ≠ ${spec.port}`;
  if (d.local !== spec.localIp) return `local ${d.local} ≠ ${spec.localIp}`;
  if (d.link !== spec.uplink) return `dev ${d.link} ≠ ${spec.uplink}`;
  if (d.learning !== false) return "learning is on";
  return undefined;
}

function addressLines(
  name: string,
  have: readonly AddrInfo[],
  want: string,
): string[] {
  const lines: string[] = [];
  let present = false;
  for (const a of have) {
    if (a.family !== "inet") continue;
    if (`${a.local}/${a.prefixlen}` === want) present = true;
    else lines.push(`addr del ${a.local}/${a.prefixlen} dev ${name}`);
  }
  if (!present) lines.push(`addr add ${want} dev ${name}`);
  return lines;
}

async function addrs(name: string, netns: string): Promise<AddrInfo[]> {
  const links = await iprouteJson<LinkInfo>("ip", ["-4", "addr", "show", "dev", name], netns);
  return [...(links[0]?.addr_info ?? [])];
}

/**
 * Makes flannel.<VNI> match the spec: recreated when incompatible (or missing), MAC/MTU fixed
 * in place, stale addresses removed, up. `onRecreate` hears why a device was replaced.
 */
export async function ensureVxlan(
  spec: VxlanSpec,
  netns = "",
  onRecreate?: (reason: string) => void,
): Promise<EnsureReport> {
  const lines: string[] = [];
  let link = await readLink(spec.name, netns);
  if (link) {
    const why = vxlanIncompatibility(link, spec);
    if (why) {
      onRecreate?.(why);
      lines.push(`link del ${spec.name}`);
      link = undefined;
    }
  }
  let created = false;
  if (!link) {
    created = true;
    lines.push(
      `link add ${spec.name} address ${spec.mac} mtu ${spec.mtu} type vxlan id ${spec.vni} ` +
        `local ${spec.localIp} dev ${spec.uplink} dstport ${spec.port} nolearning`,
      `addr add ${spec.address} dev ${spec.name}`,
      `link set ${spec.name} up`,
    );
  } else {
    if (link.address?.toLowerCase() !== spec.mac) {
      lines.push(`link set ${spec.name} address ${spec.mac}`);
    }
    if (link.mtu !== spec.mtu) lines.push(`link set ${spec.name} mtu ${spec.mtu}`);
    lines.push(...addressLines(spec.name, await addrs(spec.name, netns), spec.address));
    if (!(link.flags ?? []).includes("UP")) lines.push(`link set ${spec.name} up`);
  }
  await iprouteBatch("ip", lines, netns);
  return { created, commands: lines };
}

/** What the pod bridge must be. */
export interface BridgeSpec {
  /** "cni0". */
  readonly name: string;
  /** "<subnet>.1/<len>". */
  readonly address: string;
  readonly mtu: number;
}

/** Makes the pod bridge exist with the gateway address (others removed), MTU and up. */
export async function ensureBridge(spec: BridgeSpec, netns = ""): Promise<EnsureReport> {
  const lines: string[] = [];
  const link = await readLink(spec.name, netns);
  let created = false;
  if (link && link.linkinfo?.info_kind !== "bridge") {
    throw new Error(
      `"${spec.name}" exists but is a ${link.linkinfo?.info_kind ?? "plain"} device, not a bridge`,
    );
  }
  if (!link) {
    created = true;
    lines.push(
      `link add ${spec.name} mtu ${spec.mtu} type bridge`,
      `addr add ${spec.address} dev ${spec.name}`,
      `link set ${spec.name} up`,
    );
  } else {
    if (link.mtu !== spec.mtu) lines.push(`link set ${spec.name} mtu ${spec.mtu}`);
    lines.push(...addressLines(spec.name, await addrs(spec.name, netns), spec.address));
    if (!(link.flags ?? []).includes("UP")) lines.push(`link set ${spec.name} up`);
  }
  await iprouteBatch("ip", lines, netns);
  return { created, commands: lines };
}

/** Deletes a device if it exists (uninstall). */
export async function deleteLink(name: string, netns = ""): Promise<void> {
  if (await readLink(name, netns)) await iprouteBatch("ip", [`link del ${name}`], netns);
}
