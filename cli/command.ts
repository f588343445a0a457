/**
 * The small frame every `skiff` subcommand uses: a Command table entry, nested dispatch with
 * `--help` at every level, flag parsing on node:util parseArgs, and the exit-code contract
 * (0 ok, 1 runtime error, 2 usage or validation error).
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** Exit codes of every skiff command. */
export const EXIT_OK = 0;
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

/** One entry of a command table: `skiff <name> …` or `skiff <group> <name> …`. */
export interface Command {
  readonly name: string;
  /** One line for the table in the parent's help. */
  readonly summary: string;
  /** Runs with the arguments after the name; returns the exit code. Throw UsageError on bad usage. */
  run(args: string[]): Promise<number>;
}

/** The user called a command wrongly (exit 2); the message says how to call it. */
export class UsageError extends Error {
  constructor(message: string, readonly usage?: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * A command that only dispatches to subcommands (like `skiff` itself or `skiff service`).
 * `usage` is the line(s) printed above the subcommand table.
 */
export function commandGroup(
  name: string,
  summary: string,
  usage: string,
  subcommands: readonly Command[],
): Command {
  const help = () => {
    const width = Math.max(...subcommands.map((c) => c.name.length));
    const rows = subcommands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
    return `${usage}\n\nCommands:\n${
      rows.join("\n")
    }\n\nRun "${name} <command> --help" for a command's options.`;
  };
  return {
    name: name.split(" ").at(-1)!,
    summary,
    async run(args: string[]): Promise<number> {
      const [first, ...rest] = args;
      if (first === undefined) throw new UsageError(`"${name}" needs a command`, help());
      if (first === "--help" || first === "-h" || first === "help") {
        console.log(help());
        return EXIT_OK;
      }
      const command = subcommands.find((c) => c.name === first);
      if (command === undefined) {
        const kind = first.startsWith("-") ? "option" : "command";
        throw new UsageError(`unknown ${kind} "${first}" for "${name}"`, help());
      }
      return await command.run(rest);
    },
  };
}

/** The first line of a leaf command's help ("Usage: …") and a pointer to the rest. */
export function usageLine(help: string): string {
  return `${help.split("\n")[0]}\n(--help for more)`;
}

/** Options of a leaf command, in parseArgs' shape; --help/-h is added to every command. */
export type FlagOptions = NonNullable<ParseArgsConfig["options"]>;

/** Parsed flags and positionals, or undefined when --help was asked for (help is printed). */
export function parseFlags<O extends FlagOptions>(
  args: string[],
  options: O,
  help: string,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    const message = (e as Error).message;
    // node's text for an unknown option is long-winded; keep its first sentence.
    const unknown = /^Unknown option '([^']*)'/.exec(message);
    throw new UsageError(unknown ? `unknown option "${unknown[1]}"` : message, usageLine(help));
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(help);
    return undefined;
  }
  return {
    values: parsed.values as Record<string, string | boolean | undefined>,
    positionals: parsed.positionals,
  };
}
