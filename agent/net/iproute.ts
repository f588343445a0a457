/**
 * iproute2 helpers for reconcilers: JSON reads (`ip -j …`, `bridge -j …`) and batch writes
 * (`ip -batch -`, `bridge -batch -`), one subprocess per call, inside a netns via nsenter.
 * @module
 */
import { run } from "./exec.ts";

/** The two iproute2 tools that take batches. */
export type IprouteTool = "ip" | "bridge";

/** Runs `<tool> -j <args…>` in `netns` ("" = the caller's) and parses its JSON (empty → []). */
export async function iprouteJson<T>(
  tool: IprouteTool,
  args: readonly string[],
  netns = "",
): Promise<T[]> {
  const out = await run([tool, "-j", ...args], netns ? { netns } : {});
  const text = out.stdout.trim();
  return text ? JSON.parse(text) as T[] : [];
}

/**
 * Runs `<tool> -batch -` with one command per line (without the tool name) and throws
 * CommandError naming the failing lines. By default it stops at the first failure; with
 * `force` it runs every line (one bad entry must not hold back the others) and throws after.
 * Empty batches run nothing.
 */
export async function iprouteBatch(
  tool: IprouteTool,
  lines: readonly string[],
  netns = "",
  options: { force?: boolean } = {},
): Promise<void> {
  if (lines.length === 0) return;
  const argv = options.force ? [tool, "-force", "-batch", "-"] : [tool, "-batch", "-"];
  await run(argv, { stdin: lines.join("\n") + "\n", ...(netns && { netns }) });
}

/** Runs one iproute2 command (argv without the tool name). */
export async function iproute(
  tool: IprouteTool,
  args: readonly string[],
  netns = "",
): Promise<void> {
  await run([tool, ...args], netns ? { netns } : {});
}

/** One address of `ip -j addr show`. */
export interface AddrInfo {
  readonly family: string;
  readonly local: string;
  readonly prefixlen: number;
  readonly scope?: string;
}

/** One link of `ip -j [-d] link|addr show`. */
export interface LinkInfo {
  readonly ifindex: number;
  readonly ifname: string;
  readonly mtu: number;
  readonly address?: string;
  readonly flags?: readonly string[];
  readonly operstate?: string;
  readonly addr_info?: readonly AddrInfo[];
  readonly linkinfo?: {
    readonly info_kind?: string;
    readonly info_data?: Record<string, unknown>;
  };
  readonly master?: string;
}

/** One route of `ip -j route show`. */
export interface RouteInfo {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly flags?: readonly string[];
  readonly protocol?: string;
  readonly metric?: number;
  readonly prefsrc?: string;
}

/** Reads a link with details, or undefined when it does not exist. */
export async function readLink(name: string, netns = ""): Promise<LinkInfo | undefined> {
  const out = await run(
    ["ip", "-j", "-d", "link", "show", "dev", name],
    { allowFailure: true, ...(netns && { netns }) },
  );
  if (out.code !== 0) {
    if (/does not exist|Cannot find device/.test(out.stderr)) return undefined;
    throw new Error(`ip link show ${name}: ${out.stderr.trim()}`);
  }
  return (JSON.parse(out.stdout) as LinkInfo[])[0];
}
