/**
 * `skiff pod add|del|list|check`: the runtime side of CNI for the lab and the demo, like
 * cnitool: a Pod is a netns /run/netns/NAME wired by the node's conflist.
 * @module
 */

import { parseArgs } from "node:util";
import type { Command } from "../command.ts";
import { printPods } from "./pods.ts";
import { labNodeRoot, nodeCniPaths } from "../../agent/cni/paths.ts";
import {
  addPod,
  checkPod,
  delPod,
  parsePortMapping,
  type PodDriverOptions,
} from "../../agent/cni/runtime.ts";

const USAGE = `usage: skiff pod add NAME [--node N] [--port HOST:CONTAINER[/tcp|udp]]...
       skiff pod del NAME [--node N]
       skiff pod check NAME [--node N]
       skiff pod list [--node N] [-o table|json]
options: --node N     run the plugins in netns N (a lab node); paths default to /run/skiff/nodes/N
         --root DIR   node root holding etc/cni/net.d, opt/cni/bin, var/lib/... (default "" or the above)
         --conf FILE  conflist (default <root>/etc/cni/net.d/10-skiff.conflist)
         --bin-dir D  CNI bin dir, repeatable (default <root>/opt/cni/bin)
         --state-dir D  pod records (default <root>/var/lib/skiff/pods)
         --json       print records as JSON (same as -o json)
         -o FORMAT    pod list: table (default) or json`;

/** Runs `skiff pod …`; returns the exit code. */
export async function podCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        node: { type: "string" },
        root: { type: "string" },
        conf: { type: "string" },
        "bin-dir": { type: "string", multiple: true },
        "state-dir": { type: "string" },
        port: { type: "string", multiple: true },
        json: { type: "boolean", default: false },
        output: { type: "string", short: "o" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    console.error(`skiff pod: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [verb, name, ...extra] = positionals;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const needsName = verb === "add" || verb === "del" || verb === "check";
  if (!verb || (needsName && !name) || extra.length > 0 || (verb === "list" && name)) {
    console.error(USAGE);
    return 2;
  }
  const root = values.root ?? (values.node ? labNodeRoot(values.node) : "");
  const paths = nodeCniPaths(root);
  const driver: PodDriverOptions = {
    confFile: values.conf ?? paths.confFile,
    binDirs: values["bin-dir"] ?? [paths.binDir],
    stateDir: values["state-dir"] ?? paths.podStateDir,
    hostNetns: values.node ? `/run/netns/${values.node}` : undefined,
  };
  try {
    switch (verb) {
      case "add": {
        const portMappings = (values.port ?? []).map(parsePortMapping);
        const record = await addPod(name, driver, { portMappings });
        if (values.json) console.log(JSON.stringify(record, null, 2));
        else {
          const ips = (record.result?.ips ?? []).map((i) => i.address).join(",");
          console.log(`${record.name}\t${ips}\t${record.netns}`);
        }
        return 0;
      }
      case "del": {
        const existed = await delPod(name, driver);
        if (!existed) console.error(`skiff pod: no pod "${name}" (nothing to delete)`);
        return 0;
      }
      case "check":
        await checkPod(name, driver);
        console.log(`${name}\tok`);
        return 0;
      case "list": {
        const format = values.json ? "json" : values.output ?? "table";
        if (format !== "table" && format !== "json") {
          console.error(`skiff pod: -o must be "table" or "json", not "${format}"\n${USAGE}`);
          return 2;
        }
        await printPods(format, driver.stateDir);
        return 0;
      }
      default:
        console.error(`skiff pod: unknown verb "${verb}"\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    console.error(`skiff pod ${verb}: ${(e as Error).message}`);
    return 1;
  }
}

/** The `skiff pod` entry of the command table. */
export const podCliCommand: Command = {
  name: "pod",
  summary: "create, check, list and delete Pods through the node's CNI conflist",
  run: podCommand,
};
