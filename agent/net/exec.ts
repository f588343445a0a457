/**
 * Running the host's networking tools (ip, bridge, iptables, nsenter…) as subprocesses with
 * errors that say which command failed and what it printed. The agent never calls setns
 * itself (Deno runs several OS threads); namespaces are entered through `ip -n` or nsenter.
 * @module
 */

/** What a finished command printed. */
export interface CommandOutput {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A command that exited non-zero; the message has the command line and its stderr. */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly output: CommandOutput,
  ) {
    super(
      `${argv.join(" ")} exited with ${output.code}: ${
        (output.stderr || output.stdout).trim().slice(-2000)
      }`,
    );
    this.name = "CommandError";
  }
}

/** Options for {@linkcode run}. */
export interface RunOptions {
  /** Text fed to the command's stdin. */
  stdin?: string;
  /** Enter this network namespace (a path like /run/netns/NAME) with nsenter first. */
  netns?: string;
  /** Do not throw on a non-zero exit; the caller reads `code`. Default false. */
  allowFailure?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** Runs argv[0] with the rest as arguments and returns its output; throws CommandError on failure. */
export async function run(
  argv: readonly string[],
  options: RunOptions = {},
): Promise<CommandOutput> {
  const full = options.netns ? ["nsenter", `--net=${options.netns}`, "--", ...argv] : [...argv];
  const command = new Deno.Command(full[0], {
    args: full.slice(1),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  });
  const child = command.spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const result = await child.output();
  const output: CommandOutput = {
    code: result.code,
    stdout: new TextDecoder().decode(result.stdout),
    stderr: new TextDecoder().decode(result.stderr),
  };
  if (output.code !== 0 && !options.allowFailure) throw new CommandError(full, output);
  return output;
}
