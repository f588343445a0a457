/**
 * CHECK's own inspection of the Pod: the interface named in the result exists in the Pod's
 * netns, is up, has the result's MAC and addresses, and the result's routes are present.
 * Read with `ip -j` through nsenter (never setns in the Deno process).
 * @module
 */

import { run } from "../net/exec.ts";
import { CniCode, CniError } from "./errors.ts";
import type { CniResult } from "./version.ts";

interface IpAddrJson {
  ifname: string;
  address?: string;
  flags?: string[];
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

interface IpRouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
}

/**
 * Checks that `result`'s sandbox interface `ifName` in `netns` matches it; throws
 * CniError(102) listing every difference, CniError(3) when the netns is gone.
 */
export async function checkPodNetwork(
  netns: string,
  ifName: string,
  result: CniResult,
): Promise<void> {
  try {
    await Deno.stat(netns);
  } catch {
    throw new CniError(CniCode.UnknownContainer, `netns ${netns} does not exist`);
  }
  const problems: string[] = [];
  const interfaces = result.interfaces ?? [];
  const index = interfaces.findIndex((i) => i.name === ifName && i.sandbox);
  if (index < 0) problems.push(`prevResult lists no sandbox interface "${ifName}"`);
  const expected = interfaces[index];
  const links = await run(["ip", "-j", "addr", "show", "dev", ifName], {
    netns,
    allowFailure: true,
  });
  const link: IpAddrJson | undefined = links.code === 0 ? JSON.parse(links.stdout)[0] : undefined;
  if (!link) {
    problems.push(`interface "${ifName}" is missing in ${netns}`);
  } else {
    if (!link.flags?.includes("UP")) problems.push(`interface "${ifName}" is down`);
    if (expected?.mac && link.address?.toLowerCase() !== expected.mac.toLowerCase()) {
      problems.push(`interface "${ifName}" has MAC ${link.address}, result says ${expected.mac}`);
    }
    const have = new Set((link.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
    for (const ip of result.ips ?? []) {
      if (ip.interface !== undefined && ip.interface !== index) continue;
      if (!have.has(ip.address)) problems.push(`address ${ip.address} is missing on "${ifName}"`);
    }
  }
  if (link && (result.routes ?? []).length > 0) {
    const out = await run(["ip", "-j", "route", "show", "table", "main"], { netns });
    const routes: IpRouteJson[] = JSON.parse(out.stdout || "[]");
    const gateway4 = (result.ips ?? []).find((i) => !i.address.includes(":"))?.gateway;
    for (const route of result.routes ?? []) {
      if (route.dst.includes(":")) continue; // IPv6 routes: skiff's networks are IPv4
      const dst = route.dst === "0.0.0.0/0" ? "default" : route.dst.replace(/\/32$/, "");
      const gw = route.gw ?? gateway4;
      const found = routes.some((r) =>
        r.dst === dst && (gw === undefined || r.gateway === gw || r.gateway === undefined)
      );
      if (!found) problems.push(`route to ${route.dst}${gw ? ` via ${gw}` : ""} is missing`);
    }
  }
  if (problems.length > 0) {
    throw new CniError(CniCode.CheckFailed, `CHECK failed: ${problems.join("; ")}`);
  }
}
