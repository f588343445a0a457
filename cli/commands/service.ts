/**
 * `skiff service add|del|list`: edits the desired-state services file (agent/lb/service_file.ts)
 * that the agent's Service data plane converges to. Input is JSON, validated before anything
 * is written; a refused input leaves the file as it was.
 * @module
 */
import {
  type Command,
  commandGroup,
  EXIT_OK,
  EXIT_RUNTIME,
  parseFlags,
  UsageError,
  usageLine,
} from "../command.ts";
import { outputFormat, renderTable } from "../output.ts";
import { endpointsForNewFlows, type ServiceEntry, serviceKey } from "../../agent/lb/model.ts";
import {
  DEFAULT_SERVICES_FILE,
  deleteService,
  putServices,
  readServiceFile,
} from "../../agent/lb/service_file.ts";
import { parseServiceEntry, serviceEntryToJson } from "../../agent/lb/validate.ts";

const FILE_HELP =
  `      --file PATH        services file (default $SKIFF_SERVICES_FILE or ${DEFAULT_SERVICES_FILE})`;

function servicesFile(value: string | boolean | undefined): string {
  if (typeof value === "string") {
    if (value === "") throw new UsageError("--file must not be empty");
    return value;
  }
  return Deno.env.get("SKIFF_SERVICES_FILE") || DEFAULT_SERVICES_FILE;
}

function noPositionals(positionals: string[], help: string): void {
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}"`, usageLine(help));
  }
}

// ---- add ----

const ADD_HELP = `Usage: skiff service add -f FILE|- [--file PATH]

Adds Services, or replaces those with the same namespace/name (endpoints included).
The input is JSON: one Service, a list of them, or {"services": [...]} (what
"skiff service list -o json" prints). Example Service:
  {"namespace": "default", "name": "web", "clusterIP": "10.96.0.10",
   "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}],
   "sessionAffinity": "ClientIP",
   "endpoints": [{"ip": "10.244.1.5", "node": "n1"}]}

Options:
  -f, --filename FILE    JSON input; "-" reads standard input (required)
${FILE_HELP}
  -h, --help             this help`;

const add: Command = {
  name: "add",
  summary: "add or replace Services from JSON",
  async run(args) {
    const flags = parseFlags(args, {
      filename: { type: "string", short: "f" },
      file: { type: "string" },
    }, ADD_HELP);
    if (!flags) return EXIT_OK;
    noPositionals(flags.positionals, ADD_HELP);
    const source = flags.values.filename;
    if (typeof source !== "string" || source === "") {
      throw new UsageError("-f FILE (or -f - for standard input) is required", usageLine(ADD_HELP));
    }
    const { entries, path } = parseInput(await readInput(source));
    const result = await putServices(servicesFile(flags.values.file), entries, { entryPath: path });
    for (const e of entries) {
      const key = serviceKey(e.service);
      console.log(`service ${key} ${result.added.includes(key) ? "added" : "replaced"}`);
    }
    return EXIT_OK;
  },
};

async function readInput(source: string): Promise<string> {
  if (source === "-") return await new Response(Deno.stdin.readable).text();
  try {
    return await Deno.readTextFile(source);
  } catch (e) {
    // A missing input is the caller's mistake, but not a malformed Service: runtime error.
    throw new Error(`cannot read ${source}: ${(e as Error).message}`, { cause: e });
  }
}

/** The entries of the input and how errors name the i-th one. */
function parseInput(text: string): { entries: ServiceEntry[]; path: (i: number) => string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`input is not valid JSON: ${(e as Error).message}`);
  }
  let list: unknown[];
  let path: (i: number) => string;
  if (Array.isArray(json)) {
    list = json;
    path = (i) => `[${i}]`;
  } else if (typeof json === "object" && json !== null && "services" in json) {
    const services = (json as { services: unknown }).services;
    if (!Array.isArray(services) || Object.keys(json).length !== 1) {
      throw new UsageError('input {"services": …} must hold only a list of Services');
    }
    list = services;
    path = (i) => `services[${i}]`;
  } else {
    list = [json];
    path = () => "";
  }
  if (list.length === 0) throw new UsageError("the input holds no Service");
  return { entries: list.map((item, i) => parseServiceEntry(item, { path: path(i) })), path };
}

// ---- del ----

const DEL_HELP = `Usage: skiff service del NAMESPACE/NAME [--file PATH]

Deletes a Service and its endpoints ("NAME" alone means namespace "default").

Options:
${FILE_HELP}
  -h, --help             this help`;

const del: Command = {
  name: "del",
  summary: "delete a Service",
  async run(args) {
    const flags = parseFlags(args, { file: { type: "string" } }, DEL_HELP);
    if (!flags) return EXIT_OK;
    if (flags.positionals.length !== 1) {
      throw new UsageError("exactly one NAMESPACE/NAME is required", usageLine(DEL_HELP));
    }
    const key = parseKey(flags.positionals[0]);
    if (!(await deleteService(servicesFile(flags.values.file), key))) {
      console.error(`skiff: service ${key} not found`);
      return EXIT_RUNTIME;
    }
    console.log(`service ${key} deleted`);
    return EXIT_OK;
  },
};

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function parseKey(text: string): string {
  const parts = text.split("/");
  const [namespace, name] = parts.length === 1 ? ["default", parts[0]] : parts;
  if (parts.length > 2 || !LABEL.test(namespace) || !LABEL.test(name ?? "")) {
    throw new UsageError(
      `"${text}" is not NAMESPACE/NAME (lower-case DNS labels)`,
      usageLine(DEL_HELP),
    );
  }
  return `${namespace}/${name}`;
}

// ---- list ----

const LIST_HELP = `Usage: skiff service list [-o table|json] [--file PATH]

Lists the Services of the services file.
ENDPOINTS is "endpoints that take new flows/all endpoints".

Options:
  -o, --output FORMAT    table (default) or json (the input format of "service add")
${FILE_HELP}
  -h, --help             this help`;

const list: Command = {
  name: "list",
  summary: "list Services",
  async run(args) {
    const flags = parseFlags(args, {
      output: { type: "string", short: "o" },
      file: { type: "string" },
    }, LIST_HELP);
    if (!flags) return EXIT_OK;
    noPositionals(flags.positionals, LIST_HELP);
    const output = outputFormat(flags.values.output, LIST_HELP);
    const { services } = await readServiceFile(servicesFile(flags.values.file));
    if (output === "json") {
      console.log(JSON.stringify({ services: services.map(serviceEntryToJson) }, null, 2));
    } else if (services.length === 0) {
      console.error("No Services.");
    } else {
      console.log(formatTable(services));
    }
    return EXIT_OK;
  },
};

/** kubectl-style table: NAMESPACE NAME CLUSTER-IP PORTS ENDPOINTS AFFINITY. */
export function formatTable(services: readonly ServiceEntry[]): string {
  const rows = [["NAMESPACE", "NAME", "CLUSTER-IP", "PORTS", "ENDPOINTS", "AFFINITY"]];
  for (const { service: s, endpoints } of services) {
    rows.push([
      s.namespace,
      s.name,
      s.clusterIPs.join(",") || "None",
      s.ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${p.protocol}`).join(","),
      `${endpointsForNewFlows(endpoints).length}/${endpoints.length}`,
      s.sessionAffinity === "ClientIP" ? `ClientIP(${s.affinityTimeoutSeconds}s)` : "None",
    ]);
  }
  return renderTable(rows);
}

/** `skiff service …`. */
export const serviceCommand: Command = commandGroup(
  "skiff service",
  "add, delete and list Services (the desired-state services file)",
  "Usage: skiff service <command> [options]",
  [add, del, list],
);
