/**
 * `deno task skiff …`: the skiff command line. Subcommands live in cli/commands/, one module
 * each; to add one, import its Command and add it to COMMANDS below.
 * @module
 */
import { type Command, commandGroup, EXIT_RUNTIME, EXIT_USAGE, UsageError } from "./command.ts";
import { backendsCommand } from "./commands/backends.ts";
import { doctorCommand } from "./commands/doctor.ts";
import { leasesCommand } from "./commands/leases.ts";
import { mapsCommand } from "./commands/maps.ts";
import { podsCommand } from "./commands/pods.ts";
import { routesCommand } from "./commands/routes.ts";
import { serviceCommand } from "./commands/service.ts";
import { servicesCommand } from "./commands/services.ts";
import { installCommand, statusCommand, uninstallCommand } from "./commands/lifecycle.ts";
import { podCliCommand } from "./commands/pod.ts";
import { ServiceValidationError } from "../agent/lb/validate.ts";

/** Top-level subcommands, in the order `skiff --help` lists them. */
export const COMMANDS: readonly Command[] = [
  statusCommand,
  servicesCommand,
  backendsCommand,
  leasesCommand,
  routesCommand,
  mapsCommand,
  podsCommand,
  doctorCommand,
  installCommand,
  uninstallCommand,
  serviceCommand,
  podCliCommand,
];

/** Runs skiff with `args` (without the program name) and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const skiff = commandGroup(
    "skiff",
    "Kubernetes node data plane",
    "Usage: skiff <command> [options]",
    COMMANDS,
  );
  try {
    return await skiff.run(args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`skiff: ${e.message}${e.usage ? `\n\n${e.usage}` : ""}`);
      return EXIT_USAGE;
    }
    if (e instanceof ServiceValidationError) {
      console.error(`skiff: invalid Service: ${e.message}`);
      return EXIT_USAGE;
    }
    console.error(`skiff: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT_RUNTIME;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
