/**
 * The flags every node view shares: `--config PATH` (the agent's config file) and the config
 * flags that override it (--pin-dir, --state-dir, --netns…), loaded with the agent's own
 * loadConfig so a view reads exactly where the agent writes.
 * @module
 */
import { type AgentConfig, CONFIG_FLAGS, ConfigError, loadConfig } from "../agent/config.ts";
import { type FlagOptions, UsageError, usageLine } from "./command.ts";

/** Where the agent's config lives unless --config says otherwise. */
export const DEFAULT_CONFIG_PATH = "/etc/skiff/config.json";

/** The flags views take, in parseArgs' shape. */
export const NODE_CONFIG_FLAGS = {
  config: { type: "string", short: "c" },
  "node-name": { type: "string" },
  netns: { type: "string" },
  "state-dir": { type: "string" },
  "pin-dir": { type: "string" },
  "services-file": { type: "string" },
  dataplane: { type: "string" },
} as const satisfies FlagOptions;

/** Help lines for {@linkcode NODE_CONFIG_FLAGS}. */
export const NODE_CONFIG_HELP =
  `  -c, --config PATH      agent config file (default ${DEFAULT_CONFIG_PATH}; missing = defaults)
      --pin-dir DIR      override the config's pinDir (bpffs dir of the node's maps)
      --state-dir DIR    override the config's stateDir
      --netns PATH       override the config's netns (e.g. /run/netns/node1)
      --node-name NAME   override the config's nodeName
      --services-file F  override the config's servicesFile
      --dataplane KIND   override the config's dataplane (auto, bpf, iptables, ipvs)`;

/**
 * The node's config from --config and the override flags. A config that does not validate is
 * a UsageError (exit 2) naming the field; an explicit --config that cannot be read too.
 */
export async function nodeConfig(
  values: Record<string, string | boolean | undefined>,
  help: string,
): Promise<AgentConfig> {
  const explicit = typeof values.config === "string";
  if (explicit && values.config === "") throw new UsageError("--config must not be empty");
  const path = explicit ? values.config as string : DEFAULT_CONFIG_PATH;
  const flags: Partial<Record<keyof typeof CONFIG_FLAGS, string>> = {};
  for (const flag of Object.keys(CONFIG_FLAGS) as (keyof typeof CONFIG_FLAGS)[]) {
    const value = values[flag];
    if (typeof value === "string") flags[flag] = value;
  }
  try {
    return await loadConfig(path, flags, { required: explicit });
  } catch (error) {
    if (error instanceof ConfigError) {
      const from = `--${
        Object.entries(CONFIG_FLAGS).find(([, field]) => field === error.field)?.[0] ?? ""
      }`;
      const where = from !== "--" && typeof values[from.slice(2)] === "string"
        ? ` (set by ${from})`
        : "";
      throw new UsageError(`invalid configuration: ${error.message}${where}`, usageLine(help));
    }
    throw error;
  }
}

/** The node's network namespace for subprocesses ("" = the one skiff runs in). */
export function nodeNetns(config: AgentConfig): string {
  return config.netns;
}
