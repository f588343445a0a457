/**
 * flannel's subnet.env (read by its CNI plugin and others): FLANNEL_NETWORK, FLANNEL_SUBNET
 * (gateway style, 10.244.1.1/24, as flanneld writes it), FLANNEL_MTU, FLANNEL_IPMASQ —
 * written atomically (temp file + rename) so a reader never sees half a file.
 * @module
 */
import { cidrHost, formatCidr, formatIpv4, parseCidr } from "../net/ipv4.ts";

/** The values in subnet.env. */
export interface SubnetEnv {
  /** "10.244.0.0/16". */
  readonly network: string;
  /** The node's subnet, "10.244.1.0/24". */
  readonly subnet: string;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/** The file's text. */
export function formatSubnetEnv(env: SubnetEnv): string {
  const subnet = parseCidr(env.subnet);
  return [
    `FLANNEL_NETWORK=${formatCidr(parseCidr(env.network))}`,
    `FLANNEL_SUBNET=${formatIpv4(cidrHost(subnet, 1))}/${subnet.prefix}`,
    `FLANNEL_MTU=${env.mtu}`,
    `FLANNEL_IPMASQ=${env.ipMasq}`,
    "",
  ].join("\n");
}

/** Parses a subnet.env (skiff's or flanneld's); throws naming the missing/bad variable. */
export function parseSubnetEnv(text: string): SubnetEnv {
  const vars = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) vars.set(m[1], m[2].trim());
  }
  const need = (k: string) => {
    const v = vars.get(k);
    if (v === undefined) throw new Error(`subnet.env: ${k} is missing`);
    return v;
  };
  const gw = parseCidr(need("FLANNEL_SUBNET"), { strict: false });
  const mtu = Number(need("FLANNEL_MTU"));
  if (!Number.isInteger(mtu)) {
    throw new Error(`subnet.env: FLANNEL_MTU "${vars.get("FLANNEL_MTU")}"`);
  }
  return {
    network: formatCidr(parseCidr(need("FLANNEL_NETWORK"))),
    subnet: formatCidr(gw),
    mtu,
    ipMasq: vars.get("FLANNEL_IPMASQ") === "true",
  };
}

/** Writes the file atomically (creating its directory). */
export async function writeSubnetEnv(path: string, env: SubnetEnv): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.tmp${Deno.pid}`;
  await Deno.writeTextFile(tmp, formatSubnetEnv(env));
  await Deno.rename(tmp, path);
}

/** Reads the file, or undefined when it is missing or unreadable. */
export async function readSubnetEnv(path: string): Promise<SubnetEnv | undefined> {
  try {
    return parseSubnetEnv(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}
