/**
 * The systemd unit: rendered from skiff.service.in for this checkout, and its ExecStart line
 * parsed back into argv so the lab starts agents exactly the way systemd would.
 * @module
 */

/** Where the unit template lives. */
export const UNIT_TEMPLATE = new URL("./skiff.service.in", import.meta.url);

/** The project checkout this module belongs to. */
import { PROJECT_ROOT } from "../project_root.ts";
export { PROJECT_ROOT };

/** Renders the unit for a checkout and a Deno binary. */
export async function renderUnit(
  options: { root?: string; deno?: string } = {},
): Promise<string> {
  const root = options.root ?? PROJECT_ROOT;
  const deno = options.deno ?? `${root}/node_modules/deno/deno`;
  const template = await Deno.readTextFile(UNIT_TEMPLATE);
  return template.replaceAll("@ROOT@", root).replaceAll("@DENO@", deno);
}

/** Splits a systemd command line (double quotes and backslash escapes; no specifiers). */
export function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  let hasToken = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && i + 1 < line.length) {
      current += line[++i];
      hasToken = true;
    } else if (c === '"') {
      quoted = !quoted;
      hasToken = true;
    } else if (/\s/.test(c) && !quoted) {
      if (hasToken) out.push(current);
      current = "";
      hasToken = false;
    } else {
      current += c;
      hasToken = true;
    }
  }
  if (quoted) throw new SyntaxError(`unterminated quote in: ${line}`);
  if (hasToken) out.push(current);
  return out;
}

/** The argv of the unit's ExecStart= (prefix characters like "-" or "@" refused). */
export function execStartArgv(unitText: string): string[] {
  const lines = unitText.split("\n").filter((l) => l.startsWith("ExecStart="));
  if (lines.length !== 1) throw new Error(`expected one ExecStart= line, found ${lines.length}`);
  const argv = splitCommandLine(lines[0].slice("ExecStart=".length));
  if (argv.length === 0 || !argv[0].startsWith("/")) {
    throw new Error(`ExecStart must start with an absolute path: ${lines[0]}`);
  }
  return argv;
}

/** The variables of the unit's Environment= lines (each line: NAME=value pairs, quotes allowed). */
export function execEnvironment(unitText: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of unitText.split("\n")) {
    if (!line.startsWith("Environment=")) continue;
    for (const pair of splitCommandLine(line.slice("Environment=".length))) {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new Error(`Environment= entry "${pair}" is not NAME=value`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}
