/**
 * Running a CNI plugin binary the way libcni's invoke does: find it in CNI_PATH, set the CNI_*
 * variables, feed the config on stdin, read the result or the spec's error JSON from stdout.
 * Used by the skiff plugin for its delegate and by the runtime side for the conflist.
 * @module
 */

import { CniCode, CniError, parseCniError } from "./errors.ts";

/** The CNI_* values of one invocation. */
export interface InvokeArgs {
  readonly command: string;
  readonly containerId?: string;
  readonly netns?: string;
  readonly ifName?: string;
  readonly args?: string;
  /** Directories searched for the plugin; also passed as CNI_PATH. */
  readonly path: readonly string[];
}

/** Options for {@linkcode execPlugin}. */
export interface ExecOptions {
  /** Run the plugin inside this network namespace (path) with nsenter: the node's namespace. */
  readonly hostNetns?: string;
}

/** What a plugin printed. */
export interface ExecOutput {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Finds the executable named `type` in `path`; throws CniError(101) when it is nowhere. */
export async function findPlugin(type: string, path: readonly string[]): Promise<string> {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/.test(type)) {
    throw new CniError(CniCode.InvalidConfig, `plugin type "${type}" is not a plugin name`);
  }
  for (const dir of path) {
    const candidate = `${dir}/${type}`;
    try {
      const info = await Deno.stat(candidate);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(
    CniCode.DelegateFailed,
    `failed to find plugin "${type}" in path [${path.join(" ")}]`,
  );
}

/** The CNI_* environment for `args` (absent values are passed empty, as unset). */
export function cniEnv(args: InvokeArgs): Record<string, string> {
  return {
    CNI_COMMAND: args.command,
    CNI_CONTAINERID: args.containerId ?? "",
    CNI_NETNS: args.netns ?? "",
    CNI_IFNAME: args.ifName ?? "",
    CNI_ARGS: args.args ?? "",
    CNI_PATH: args.path.join(":"),
  };
}

/** Runs `binary` with `stdin` and the CNI_* environment of `args`; returns what it printed. */
export async function execPlugin(
  binary: string,
  stdin: string,
  args: InvokeArgs,
  options: ExecOptions = {},
): Promise<ExecOutput> {
  const argv = options.hostNetns
    ? ["nsenter", `--net=${options.hostNetns}`, "--", binary]
    : [binary];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: cniEnv(args),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  try {
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  } catch {
    // the plugin exited without reading stdin; its exit status says why
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/**
 * Runs plugin `type` (found in args.path) with config `conf`. Returns its parsed stdout (the
 * result; undefined when it printed nothing); throws the plugin's CniError when it failed.
 */
export async function invokePlugin(
  type: string,
  conf: Record<string, unknown>,
  args: InvokeArgs,
  options: ExecOptions = {},
): Promise<Record<string, unknown> | undefined> {
  const binary = await findPlugin(type, args.path);
  const out = await execPlugin(binary, JSON.stringify(conf), args, options);
  if (out.code !== 0) {
    const err = parseCniError(out.stdout);
    if (err) {
      throw new CniError(err.code, `${type} ${args.command}: ${err.message}`, err.details);
    }
    throw new CniError(
      CniCode.DelegateFailed,
      `${type} ${args.command} exited with ${out.code}`,
      (out.stderr || out.stdout).trim().slice(-1000),
    );
  }
  const text = out.stdout.trim();
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new CniError(
      CniCode.DelegateFailed,
      `${type} ${args.command} printed a result that is not JSON`,
      text.slice(0, 1000),
    );
  }
}
