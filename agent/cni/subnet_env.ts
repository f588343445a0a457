/**
 * Reading flannel's subnet.env (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ):
 * the node's Pod subnet as the overlay wrote it. Missing file = try again later (code 11).
 * @module
 */

import { formatCidr, parseCidr } from "../net/ipv4.ts";
import { CniCode, CniError } from "./errors.ts";

/** The values of a subnet.env file, checked. */
export interface SubnetEnv {
  /** The cluster Pod network, e.g. "10.244.0.0/16". */
  readonly network: string;
  /** The node's Pod subnet as a network, e.g. "10.244.1.0/24". */
  readonly subnet: string;
  /** The address part of FLANNEL_SUBNET (the bridge's gateway), e.g. "10.244.1.1". */
  readonly gateway: string;
  readonly mtu: number;
  /** True when the overlay already masquerades Pod traffic leaving the cluster network. */
  readonly ipMasq: boolean;
}

/** Parses the text of a subnet.env; throws CniError(100) naming the bad variable. */
export function parseSubnetEnv(text: string, path = "subnet.env"): SubnetEnv {
  const vars = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw invalid(path, `line "${line}" is not NAME=value`);
    vars.set(line.slice(0, eq), line.slice(eq + 1).replace(/^"(.*)"$/, "$1"));
  }
  const need = (name: string): string => {
    const v = vars.get(name);
    if (v === undefined || v === "") throw invalid(path, `${name} is missing`);
    return v;
  };
  let network: string;
  let subnet: string;
  let gateway: string;
  try {
    network = formatCidr(parseCidr(need("FLANNEL_NETWORK")));
  } catch (e) {
    if (e instanceof CniError) throw e;
    throw invalid(path, `FLANNEL_NETWORK: ${(e as Error).message}`);
  }
  try {
    const text = need("FLANNEL_SUBNET");
    subnet = formatCidr(parseCidr(text, { strict: false }));
    gateway = text.slice(0, text.indexOf("/"));
  } catch (e) {
    if (e instanceof CniError) throw e;
    throw invalid(path, `FLANNEL_SUBNET: ${(e as Error).message}`);
  }
  const mtuText = need("FLANNEL_MTU");
  const mtu = Number(mtuText);
  if (!/^\d+$/.test(mtuText) || mtu < 68 || mtu > 65535) {
    throw invalid(path, `FLANNEL_MTU "${mtuText}" is not an MTU (68..65535)`);
  }
  const masqText = vars.get("FLANNEL_IPMASQ") ?? "false";
  if (masqText !== "true" && masqText !== "false") {
    throw invalid(path, `FLANNEL_IPMASQ "${masqText}" is not true or false`);
  }
  return { network, subnet, gateway, mtu, ipMasq: masqText === "true" };
}

/**
 * Reads and parses subnet.env at `path`. A missing file is CniError(11) (the overlay has not
 * written it yet); another read failure is CniError(5).
 */
export async function readSubnetEnv(path: string): Promise<SubnetEnv> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CniError(
        CniCode.TryAgainLater,
        `subnet file ${path} does not exist yet (is the skiff agent running?)`,
      );
    }
    throw new CniError(CniCode.IoFailure, `cannot read subnet file ${path}`, String(e));
  }
  return parseSubnetEnv(text, path);
}

function invalid(path: string, what: string): CniError {
  return new CniError(CniCode.InvalidSubnetEnv, `invalid subnet file ${path}: ${what}`);
}

/** Formats a subnet.env the way flannel writes it (used by tests and the agent). */
export function formatSubnetEnv(env: {
  network: string;
  subnet: string;
  mtu: number;
  ipMasq: boolean;
}): string {
  return `FLANNEL_NETWORK=${env.network}\nFLANNEL_SUBNET=${env.subnet}\n` +
    `FLANNEL_MTU=${env.mtu}\nFLANNEL_IPMASQ=${env.ipMasq}\n`;
}
