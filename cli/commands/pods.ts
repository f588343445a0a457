/**
 * `skiff pods`: the Pods the CNI pod driver (agent/cni/runtime.ts) recorded on this node — the
 * same listing as `skiff pod list`, with the record dir taken from the agent's config
 * (<stateDir>/pods). Both print through {@linkcode printPods}.
 * @module
 */
import { pathExists } from "../../agent/fs.ts";
import { listPods, type PodRecord } from "../../agent/cni/runtime.ts";
import { type Command, EXIT_OK } from "../command.ts";
import { NODE_CONFIG_HELP } from "../node_config.ts";
import { OUTPUT_HELP, type OutputFormat, printView } from "../output.ts";
import { parseViewArgs } from "./view_common.ts";

const HELP = `Usage: skiff pods [-o table|json] [--config PATH] [--state-dir DIR]

Lists the Pods the CNI pod driver ("skiff pod add") created on this node, from its records
in <stateDir>/pods: name, network namespace, IP addresses and host port mappings. STATUS is
"ok", "adding" (ADD did not finish) or "netns missing" (the namespace was removed behind
the driver's back). Same as "skiff pod list".

Options:
${OUTPUT_HELP}
${NODE_CONFIG_HELP}
  -h, --help             this help`;

/** A Pod in `-o json`: the driver's record plus what the listing derives from it. */
export interface PodView {
  readonly name: string;
  readonly netns: string;
  readonly ips: string[];
  readonly ports: string[];
  readonly status: "ok" | "adding" | "netns missing";
  readonly record: PodRecord;
}

/** The views of `pods` (checks that each netns still exists). */
export async function podViews(pods: readonly PodRecord[]): Promise<PodView[]> {
  return await Promise.all(pods.map(async (p) => ({
    name: p.name,
    netns: p.netns,
    ips: (p.result?.ips ?? []).map((i) => i.address),
    ports: (p.runtimeConfig.portMappings ?? []).map((m) =>
      `${m.hostIP ? `${m.hostIP}:` : ""}${m.hostPort}:${m.containerPort}/${m.protocol}`
    ),
    status: p.result === null ? "adding" : (await pathExists(p.netns)) ? "ok" : "netns missing",
    record: p,
  })));
}

/** Prints the Pods recorded in `stateDir` as a table or JSON. */
export async function printPods(format: OutputFormat, stateDir: string): Promise<void> {
  const pods = await podViews(await listPods({ stateDir }));
  printView(format, { stateDir, pods }, {
    headers: ["NAME", "STATUS", "IP", "PORTS", "NETNS"],
    rows: pods.map((p) => [
      p.name,
      p.status,
      p.ips.join(",") || "-",
      p.ports.join(",") || "-",
      p.netns,
    ]),
    empty: `No Pods recorded in ${stateDir}.`,
  });
}

/** `skiff pods`. */
export const podsCommand: Command = {
  name: "pods",
  summary: 'Pods the CNI pod driver created on this node (= "pod list")',
  async run(args) {
    const parsed = await parseViewArgs(args, HELP);
    if (!parsed) return EXIT_OK;
    const { format, config } = parsed;
    await printPods(format, `${config.stateDir}/pods`);
    return EXIT_OK;
  },
};
