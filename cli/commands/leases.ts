/**
 * `skiff leases`: the subnet leases in the configured store (embedded or etcd), one per node,
 * with this node's marked.
 * @module
 */
import { parseCidr } from "../../agent/net/ipv4.ts";
import { type Command, EXIT_OK } from "../command.ts";
import { NODE_CONFIG_HELP } from "../node_config.ts";
import { OUTPUT_HELP, printView } from "../output.ts";
import { findOwnLease, openNodeStore, storeName } from "./overlay_view.ts";
import { parseViewArgs } from "./view_common.ts";

const HELP = `Usage: skiff leases [-o table|json] [--config PATH]

Lists the subnet leases of the configured store (config store: embedded dir or etcd):
subnet, the node's public (underlay) IP, its VTEP MAC and VNI, and when the lease expires.
"*" marks this node's lease (the one whose public IP is an address of the node, else the
subnet in subnet.env).

Options:
${OUTPUT_HELP}
${NODE_CONFIG_HELP}
  -h, --help             this help`;

/** "in 23h59m", "in 42s", "expired". */
export function expiresIn(expiresAt: number | undefined, now: number): string {
  if (expiresAt === undefined) return "-";
  const s = Math.round((expiresAt - now) / 1000);
  if (s <= 0) return "expired";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `in ${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `in ${m}m${String(s % 60).padStart(2, "0")}s`;
  return `in ${s}s`;
}

/** `skiff leases`. */
export const leasesCommand: Command = {
  name: "leases",
  summary: "subnet leases in the store (this node's marked)",
  async run(args) {
    const parsed = await parseViewArgs(args, HELP);
    if (!parsed) return EXIT_OK;
    const { format, config } = parsed;
    const store = await openNodeStore(config);
    let snapshot;
    try {
      snapshot = await store.listLeases();
    } finally {
      await store.close();
    }
    const leases = [...snapshot.leases].sort((a, b) =>
      parseCidr(a.subnet).base - parseCidr(b.subnet).base
    );
    const { lease: own } = await findOwnLease(config, leases);
    const now = Date.now();
    printView(format, {
      store: storeName(config),
      leases: leases.map((l) => ({
        subnet: l.subnet,
        publicIp: l.attrs.publicIp,
        vtepMac: l.attrs.vtepMac,
        vni: l.attrs.vni,
        backendType: l.attrs.backendType,
        expiresAt: l.expiresAt === undefined ? null : new Date(l.expiresAt).toISOString(),
        thisNode: l === own,
      })),
    }, {
      headers: ["", "SUBNET", "PUBLIC-IP", "VTEP-MAC", "VNI", "EXPIRES"],
      rows: leases.map((l) => [
        l === own ? "*" : "",
        l.subnet,
        l.attrs.publicIp,
        l.attrs.vtepMac,
        String(l.attrs.vni),
        expiresIn(l.expiresAt, now),
      ]),
      empty: `No leases in ${storeName(config)}.`,
    });
    return EXIT_OK;
  },
};
