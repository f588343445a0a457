/**
 * Small pieces the read-only node views share: argument checks, protocol names, opening the
 * node's LB maps with an error that says what to check.
 * @module
 */
import { BpfError, Errno } from "../../agent/bpf/errno.ts";
import { LbMaps } from "../../agent/lb/lb_maps.ts";
import { parseFlags, UsageError, usageLine } from "../command.ts";
import type { AgentConfig } from "../../agent/config.ts";
import { NODE_CONFIG_FLAGS, nodeConfig } from "../node_config.ts";
import { OUTPUT_FLAG, type OutputFormat, outputFormat } from "../output.ts";

/** Refuses positional arguments (views take flags only). */
export function noPositionals(positionals: readonly string[], help: string): void {
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}"`, usageLine(help));
  }
}

export { protoName } from "../../agent/lb/lb_abi.ts";

/**
 * Opens the LB maps pinned in `pinDir`; a missing pin dir or map is an Error saying so and
 * what to check (the agent not running with the bpf data plane, or a wrong --pin-dir).
 */
export function openLbMaps(pinDir: string): LbMaps {
  try {
    return LbMaps.open(pinDir);
  } catch (error) {
    if (error instanceof BpfError && error.errno === Errno.ENOENT) {
      const dirExists = (() => {
        try {
          return Deno.statSync(pinDir).isDirectory;
        } catch {
          return false;
        }
      })();
      throw new Error(
        dirExists
          ? `no LB maps in ${pinDir} (${error.message}): the bpf Service data plane is not installed for this node (an agent with dataplane "auto" may have chosen iptables)`
          : `pin dir ${pinDir} does not exist: no agent has loaded BPF programs for this node (check --pin-dir or the config's pinDir)`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** What a read-only node view needs from its arguments. */
export interface ViewArgs {
  readonly format: OutputFormat;
  readonly config: AgentConfig;
}

/**
 * The prologue every node view shares: `-o`, `--config` and the config override flags, no
 * positionals. Undefined when `--help` was asked for (the help is printed).
 */
export async function parseViewArgs(args: string[], help: string): Promise<ViewArgs | undefined> {
  const flags = parseFlags(args, { ...OUTPUT_FLAG, ...NODE_CONFIG_FLAGS }, help);
  if (!flags) return undefined;
  noPositionals(flags.positionals, help);
  const format = outputFormat(flags.values.output, help);
  return { format, config: await nodeConfig(flags.values, help) };
}
