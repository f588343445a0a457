/**
 * `skiff services`: the Services of the services file joined with what the data plane holds.
 * For the bpf data plane each frontend (ClusterIP, external IP, NodePort) is looked up in the
 * pinned LB maps: programmed as the file wants, programmed differently, or not programmed;
 * with its backend count and its packet/byte counters (lb_stats, summed over CPUs).
 * @module
 */
import type { AgentConfig } from "../../agent/config.ts";
import { SvcFlag, type SvcKey, type SvcValue } from "../../agent/lb/lb_abi.ts";
import { backendId, frontendId, planLb, type PlannedFrontend } from "../../agent/lb/map_plan.ts";
import type { ServiceSnapshot } from "../../agent/lb/model.ts";
import { readLbState } from "../../agent/lb/reconciler.ts";
import { readServiceFile } from "../../agent/lb/service_file.ts";
import { detectUplink } from "../../agent/overlay/uplink.ts";
import { type Command, EXIT_OK } from "../command.ts";
import { NODE_CONFIG_HELP } from "../node_config.ts";
import { OUTPUT_HELP, printView } from "../output.ts";
import { openLbMaps, parseViewArgs, protoName } from "./view_common.ts";

const HELP = `Usage: skiff services [-o table|json] [--config PATH] [--pin-dir DIR]

Lists the Services of the services file (config servicesFile), one row per frontend
(ClusterIP, external/LoadBalancer IP, NodePort on the node address), joined with the
node's data plane. For bpf, STATUS is "programmed" (the maps hold what the file asks),
"differs" (held, but other backends or flags: the agent has not converged yet) or
"not programmed"; BACKENDS is "in the maps/wanted"; PACKETS and BYTES are the frontend's
counters. Frontends in the maps that no Service asks for are listed as "stale".

Options:
${OUTPUT_HELP}
${NODE_CONFIG_HELP}
  -h, --help             this help`;

/** A frontend in `skiff services -o json`. */
export interface FrontendView {
  readonly service: string | null;
  readonly vip: string;
  readonly port: number;
  readonly protocol: string;
  /** ClusterIP, External or NodePort. */
  readonly kind: string;
  /** programmed, differs, not programmed, stale, or unknown (not a bpf data plane). */
  readonly status: string;
  readonly revNatId: number | null;
  /** Backends the maps hold for new flows (null when not programmed). */
  readonly backends: number | null;
  /** Backends the services file wants for new flows on this node. */
  readonly wantedBackends: number | null;
  readonly flags: string[];
  readonly packets: number | null;
  readonly bytes: number | null;
  readonly newFlows: number | null;
  readonly noBackend: number | null;
}

function kindOf(flags: number): string {
  if (flags & SvcFlag.NODEPORT) return "NodePort";
  if (flags & SvcFlag.EXTERNAL) return "External";
  return "ClusterIP";
}

function flagNames(flags: number): string[] {
  const out: string[] = [];
  if (flags & SvcFlag.LOCAL) out.push("local");
  if (flags & SvcFlag.AFFINITY) out.push("affinity");
  return out;
}

interface MapsView {
  readonly frontends: FrontendView[];
  readonly snatAddr: string | null;
}

/** Joins the snapshot with the maps of `pinDir` (bpf data plane). */
function joinWithMaps(snapshot: ServiceSnapshot, config: AgentConfig): MapsView {
  using maps = openLbMaps(config.pinDir);
  const state = readLbState(maps);
  // NodePort frontends are planned on the address the agent programmed (its SNAT address).
  const plan = planLb(snapshot, {
    nodeName: config.nodeName,
    nodeIPs: state.snatAddr ? [state.snatAddr] : [],
  });
  const fronts = new Map<string, { key: SvcKey; value: SvcValue }>();
  const slots = new Map<number, string[]>();
  for (const { key, value } of state.services.values()) {
    if (key.slot === 0) {
      fronts.set(frontendId(key.vip, key.dport, key.proto), { key, value });
    } else {
      const backend = state.backends.get(value.backend_id);
      const list = slots.get(value.rev_nat_id) ?? [];
      list.push(backend ? backendId(backend) : `#${value.backend_id}`);
      slots.set(value.rev_nat_id, list);
    }
  }
  const counters = (revNatId: number) => {
    if (revNatId >= maps.stats.info().maxEntries) return undefined;
    return maps.stats.getSum(revNatId);
  };
  const view = (f: PlannedFrontend | undefined, id: string): FrontendView => {
    const held = fronts.get(id);
    const stats = held ? counters(held.value.rev_nat_id) : undefined;
    let status = "not programmed";
    if (held && f) {
      const have = (slots.get(held.value.rev_nat_id) ?? []).sort();
      const same = have.length === f.backends.length && have.every((b, i) => b === f.backends[i]);
      status = same && held.value.flags === f.flags && held.value.count === f.backends.length &&
          held.value.affinity_timeout === f.affinityTimeout
        ? "programmed"
        : "differs";
    } else if (held) {
      status = "stale";
    }
    const key = held?.key;
    return {
      service: f?.service ?? null,
      vip: f?.vip ?? key!.vip,
      port: f?.port ?? key!.dport,
      protocol: protoName(f?.proto ?? key!.proto),
      kind: kindOf(f?.flags ?? held!.value.flags),
      status,
      revNatId: held?.value.rev_nat_id ?? null,
      backends: held ? held.value.count : null,
      wantedBackends: f ? f.backends.length : null,
      flags: flagNames(held?.value.flags ?? f!.flags),
      packets: stats?.packets ?? null,
      bytes: stats?.bytes ?? null,
      newFlows: stats?.new_flows ?? null,
      noBackend: stats?.no_backend ?? null,
    };
  };
  const frontends = [...plan.frontends].map(([id, f]) => view(f, id));
  for (const id of fronts.keys()) {
    if (!plan.frontends.has(id)) frontends.push(view(undefined, id));
  }
  return { frontends, snatAddr: state.snatAddr ?? null };
}

/**
 * Frontends of the file when the data plane is not bpf (nothing to look up in maps); NodePorts
 * are shown on the uplink's address, the node address the agent uses.
 */
async function fileOnly(snapshot: ServiceSnapshot, config: AgentConfig): Promise<FrontendView[]> {
  const nodeIP = await detectUplink(config.uplink, config.netns).then((u) => u.ip, () => undefined);
  const plan = planLb(snapshot, { nodeName: config.nodeName, nodeIPs: nodeIP ? [nodeIP] : [] });
  return [...plan.frontends.values()].map((f) => ({
    service: f.service,
    vip: f.vip,
    port: f.port,
    protocol: protoName(f.proto),
    kind: kindOf(f.flags),
    status: "unknown",
    revNatId: null,
    backends: null,
    wantedBackends: f.backends.length,
    flags: flagNames(f.flags),
    packets: null,
    bytes: null,
    newFlows: null,
    noBackend: null,
  }));
}

const num = (n: number | null) => n === null ? "-" : String(n);

/** `skiff services`. */
export const servicesCommand: Command = {
  name: "services",
  summary: "Services of the services file and what the data plane holds for them",
  async run(args) {
    const parsed = await parseViewArgs(args, HELP);
    if (!parsed) return EXIT_OK;
    const { format, config } = parsed;
    const snapshot = await readServiceFile(config.servicesFile);
    const bpf = config.dataplane === "bpf" || config.dataplane === "auto";
    const joined = bpf ? joinWithMaps(snapshot, config) : undefined;
    const frontends = joined?.frontends ?? await fileOnly(snapshot, config);
    const byService = new Map<string, FrontendView[]>();
    for (const f of frontends) {
      if (f.service === null) continue;
      byService.set(f.service, [...(byService.get(f.service) ?? []), f]);
    }
    const json = {
      servicesFile: config.servicesFile,
      dataplane: config.dataplane,
      ...(bpf && { pinDir: config.pinDir, snatAddr: joined?.snatAddr ?? null }),
      services: snapshot.services.map(({ service, endpoints }) => {
        const key = `${service.namespace}/${service.name}`;
        const fronts = byService.get(key) ?? [];
        // the Service's counters: the sum over its frontends (null when none is counted)
        const total = (pick: (f: FrontendView) => number | null) =>
          fronts.some((f) => pick(f) !== null)
            ? fronts.reduce((sum, f) => sum + (pick(f) ?? 0), 0)
            : null;
        return {
          namespace: service.namespace,
          name: service.name,
          endpoints: endpoints.length,
          packets: total((f) => f.packets),
          bytes: total((f) => f.bytes),
          frontends: fronts.map(({ service: _, ...f }) => f),
        };
      }),
      stale: frontends.filter((f) => f.service === null).map(({ service: _, ...f }) => f),
    };
    if (!bpf) {
      console.error(
        `note: data plane "${config.dataplane}" keeps no BPF maps; STATUS is not checked`,
      );
    }
    printView(format, json, {
      headers: [
        "NAMESPACE",
        "NAME",
        "TYPE",
        "FRONTEND",
        "STATUS",
        "BACKENDS",
        "FLAGS",
        "PACKETS",
        "BYTES",
      ],
      rows: frontends.map((f) => {
        const [namespace, name] = f.service?.split("/") ?? ["?", "?"];
        return [
          namespace,
          name,
          f.kind,
          `${f.vip}:${f.port}/${f.protocol}`,
          f.status,
          `${num(f.backends)}/${num(f.wantedBackends)}`,
          f.flags.join(",") || "-",
          num(f.packets),
          num(f.bytes),
        ];
      }),
      empty: `No Services in ${config.servicesFile}.`,
    });
    return EXIT_OK;
  },
};
