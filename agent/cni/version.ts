/**
 * CNI spec versions: which ones skiff speaks, ordering, and converting a result between the
 * 0.3/0.4 format (ips carry "version") and the 1.x format (they do not).
 * @module
 */

/** Spec versions skiff accepts and answers, oldest first. */
export const SUPPORTED_VERSIONS: readonly string[] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/** The newest spec version skiff implements. */
export const CURRENT_VERSION = "1.1.0";

/** Compares two dotted versions; NaN parts sort first. Negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** True when `version` is at least `min` (both dotted). */
export function versionAtLeast(version: string, min: string): boolean {
  return compareVersions(version, min) >= 0;
}

/** One interface of a CNI result. */
export interface ResultInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  mtu?: number;
  [key: string]: unknown;
}

/** One IP configuration of a CNI result (1.x shape; `version` only in 0.3/0.4 output). */
export interface ResultIp {
  address: string;
  gateway?: string;
  interface?: number;
  version?: string;
}

/** One route of a CNI result. */
export interface ResultRoute {
  dst: string;
  gw?: string;
  [key: string]: unknown;
}

/** A CNI ADD result. */
export interface CniResult {
  cniVersion: string;
  interfaces?: ResultInterface[];
  ips?: ResultIp[];
  routes?: ResultRoute[];
  dns?: Record<string, unknown>;
}

/**
 * Re-expresses `result` in spec version `to`: 0.3.x/0.4.0 put `version` ("4"/"6") on each ip,
 * 1.x drop it; everything else carries over. Only results of 0.3.0 and newer are understood.
 */
export function convertResult(result: CniResult, to: string): CniResult {
  const legacy = !versionAtLeast(to, "1.0.0");
  const out: CniResult = { cniVersion: to };
  if (result.interfaces) out.interfaces = result.interfaces.map((i) => ({ ...i }));
  out.ips = (result.ips ?? []).map((ip) => {
    const { version: _drop, ...rest } = ip;
    return legacy ? { version: ip.address.includes(":") ? "6" : "4", ...rest } : rest;
  });
  if (result.routes) out.routes = result.routes.map((r) => ({ ...r }));
  out.dns = result.dns ?? {};
  return out;
}
