/**
 * Building the delegate config from the skiff config and subnet.env, as flannel's plugin does:
 * bridge on cni0 as the Pods' gateway, MTU from the overlay, masquerade only when the overlay
 * does not, host-local on the node subnet with a route to the cluster network. Pure.
 * @module
 */

import { formatIpv4, parseCidr } from "../net/ipv4.ts";
import type { SkiffNetConf } from "./config.ts";
import type { SubnetEnv } from "./subnet_env.ts";

/** The bridge the delegate uses when the user names none (flannel's). */
export const DEFAULT_BRIDGE = "cni0";

/**
 * The delegate's network config for `conf` on a node described by `subnet`, in spec version
 * `cniVersion` (one the delegate binary speaks). User delegate options win over the defaults.
 */
export function buildDelegate(
  conf: SkiffNetConf,
  subnet: SubnetEnv,
  cniVersion: string,
): Record<string, unknown> {
  const user = conf.delegate;
  const type = typeof user.type === "string" ? user.type : "bridge";
  // The gateway is explicit on the route (the kernel route is the same without it): bridge
  // 1.1.1's CHECK looks for a route with exactly the result's gw and fails on a missing one.
  const gateway = subnet.gateway !== subnet.subnet.split("/")[0]
    ? subnet.gateway
    : formatIpv4(parseCidr(subnet.subnet).base + 1);
  const ipam: Record<string, unknown> = {
    type: "host-local",
    ranges: [[{ subnet: subnet.subnet, gateway }]],
    routes: [{ dst: subnet.network, gw: gateway }],
  };
  if (conf.ipamDataDir) ipam.dataDir = conf.ipamDataDir;
  const delegate: Record<string, unknown> = {
    cniVersion,
    name: conf.name,
    type,
  };
  if (type === "bridge") {
    delegate.bridge = DEFAULT_BRIDGE;
    delegate.isGateway = true;
  }
  delegate.mtu = subnet.mtu;
  delegate.ipMasq = !subnet.ipMasq;
  for (const [key, value] of Object.entries(user)) delegate[key] = value;
  delegate.cniVersion = cniVersion;
  delegate.name = conf.name;
  delegate.type = type;
  delegate.ipam = ipam;
  return delegate;
}
