/**
 * `skiff backends`: the backends the node's LB maps hold (lb_backends), with their flags and,
 * from the services file, the node hosting each and the Services using it; optionally only
 * those of one Service.
 * @module
 */
import { BackendFlag } from "../../agent/lb/lb_abi.ts";
import { backendId } from "../../agent/lb/map_plan.ts";
import type { ServiceSnapshot } from "../../agent/lb/model.ts";
import { readLbState } from "../../agent/lb/reconciler.ts";
import { readServiceFile } from "../../agent/lb/service_file.ts";
import { type Command, EXIT_OK, parseFlags, UsageError, usageLine } from "../command.ts";
import { NODE_CONFIG_FLAGS, NODE_CONFIG_HELP, nodeConfig } from "../node_config.ts";
import { OUTPUT_FLAG, OUTPUT_HELP, outputFormat, printView } from "../output.ts";
import { openLbMaps, protoName } from "./view_common.ts";

const HELP = `Usage: skiff backends [NAMESPACE/NAME] [-o table|json] [--config PATH] [--pin-dir DIR]

Lists the backends held in the node's LB maps (lb_backends): id, address, protocol, flags
(terminating: keeps its flows, takes no new ones; local: on this node), the node hosting it
and the Services that use it (both from the services file). With NAMESPACE/NAME (or
--service), only that Service's backends.

Options:
      --service NS/NAME  only this Service's backends ("NAME" alone: namespace default)
${OUTPUT_HELP}
${NODE_CONFIG_HELP}
  -h, --help             this help`;

/** A backend in `skiff backends -o json`. */
export interface BackendView {
  readonly id: number;
  readonly ip: string;
  readonly port: number;
  readonly protocol: string;
  readonly flags: string[];
  readonly node: string | null;
  readonly services: string[];
}

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function parseServiceName(text: string): string {
  const parts = text.split("/");
  const [namespace, name] = parts.length === 1 ? ["default", parts[0]] : parts;
  if (parts.length > 2 || !LABEL.test(namespace) || !LABEL.test(name ?? "")) {
    throw new UsageError(`"${text}" is not NAMESPACE/NAME`, usageLine(HELP));
  }
  return `${namespace}/${name}`;
}

/** Backend identity ("ip:port/proto") → node and Services, from the file. */
function owners(snapshot: ServiceSnapshot): Map<string, { node: string; services: Set<string> }> {
  const out = new Map<string, { node: string; services: Set<string> }>();
  const proto = { TCP: 6, UDP: 17 } as const;
  for (const { service, endpoints } of snapshot.services) {
    const key = `${service.namespace}/${service.name}`;
    for (const port of service.ports) {
      for (const e of endpoints) {
        const id = backendId({
          addr: e.ip,
          port: e.ports?.[port.name] ?? port.targetPort,
          proto: proto[port.protocol],
        });
        const o = out.get(id) ?? { node: e.node, services: new Set<string>() };
        o.services.add(key);
        out.set(id, o);
      }
    }
  }
  return out;
}

function flagNames(flags: number): string[] {
  const out: string[] = [];
  if (flags & BackendFlag.TERMINATING) out.push("terminating");
  if (flags & BackendFlag.LOCAL) out.push("local");
  return out;
}

/** `skiff backends`. */
export const backendsCommand: Command = {
  name: "backends",
  summary: "backends in the node's LB maps (optionally of one Service)",
  async run(args) {
    const flags = parseFlags(
      args,
      { ...OUTPUT_FLAG, ...NODE_CONFIG_FLAGS, service: { type: "string" } },
      HELP,
    );
    if (!flags) return EXIT_OK;
    const { positionals, values } = flags;
    if (positionals.length > 1 || (positionals.length === 1 && values.service !== undefined)) {
      throw new UsageError("give at most one Service (NAMESPACE/NAME)", usageLine(HELP));
    }
    const wanted = positionals[0] ?? values.service;
    const only = typeof wanted === "string" ? parseServiceName(wanted) : undefined;
    const format = outputFormat(values.output, HELP);
    const config = await nodeConfig(values, HELP);
    if (config.dataplane === "iptables" || config.dataplane === "ipvs") {
      throw new Error(
        `backends are read from the bpf LB maps, but this node's data plane is "${config.dataplane}" (see "skiff services" for the services file's endpoints)`,
      );
    }
    const snapshot = await readServiceFile(config.servicesFile);
    if (
      only && !snapshot.services.some((s) => `${s.service.namespace}/${s.service.name}` === only)
    ) {
      throw new Error(`service ${only} is not in ${config.servicesFile}`);
    }
    const byId = owners(snapshot);
    let backends: BackendView[];
    {
      using maps = openLbMaps(config.pinDir);
      const state = readLbState(maps);
      backends = [...state.backends].sort(([a], [b]) => a - b).map(([id, b]) => {
        const o = byId.get(backendId(b));
        return {
          id,
          ip: b.addr,
          port: b.port,
          protocol: protoName(b.proto),
          flags: flagNames(b.flags),
          node: o?.node ?? null,
          services: o ? [...o.services].sort() : [],
        };
      });
    }
    if (only) backends = backends.filter((b) => b.services.includes(only));
    printView(format, { pinDir: config.pinDir, ...(only && { service: only }), backends }, {
      headers: ["ID", "BACKEND", "PROTO", "FLAGS", "NODE", "SERVICES"],
      rows: backends.map((b) => [
        String(b.id),
        `${b.ip}:${b.port}`,
        b.protocol,
        b.flags.join(",") || "-",
        b.node ?? "-",
        b.services.join(",") || "-",
      ]),
      empty: only
        ? `No backends of ${only} in ${config.pinDir}.`
        : `No backends in ${config.pinDir}.`,
    });
    return EXIT_OK;
  },
};
