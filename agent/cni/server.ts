/**
 * The CNI fast path: the agent serves plugin requests on a unix socket, so the `skiff` shim
 * only forwards (sh + socat, a few ms) instead of starting Deno per call. The agent must run
 * in the node's network namespace (it runs the delegates there). Without the socket the shim
 * runs the plugin itself; the answer is the same either way (the same `runPlugin`).
 *
 * Wire format: request = "KEY=VALUE\n" lines for the CNI_* variables, an empty line, then the
 * config (until EOF); answer = the plugin's stdout, then "\n#exit=N" (or "#exit=N" alone).
 * @module
 */

import { runPlugin, type RunPluginOptions } from "./plugin.ts";

/** A running CNI socket server. */
export interface CniServer extends AsyncDisposable {
  readonly path: string;
  /** Stops accepting, waits for requests in flight, removes the socket. Idempotent. */
  close(): Promise<void>;
}

const CNI_VARS = new Set([
  "CNI_COMMAND",
  "CNI_CONTAINERID",
  "CNI_NETNS",
  "CNI_IFNAME",
  "CNI_ARGS",
  "CNI_PATH",
]);

/** Parses one request; unknown variable names are ignored. */
export function parseRequest(text: string): { env: Record<string, string>; stdin: string } {
  const split = text.indexOf("\n\n");
  const head = split < 0 ? text : text.slice(0, split);
  const stdin = split < 0 ? "" : text.slice(split + 2);
  const env: Record<string, string> = {};
  for (const line of head.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0 && CNI_VARS.has(line.slice(0, eq))) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  // the shim sends every variable, set or not: empty means unset, as for the plugin binary
  for (const [k, v] of Object.entries(env)) if (v === "") delete env[k];
  return { env, stdin };
}

/** Serves CNI requests on unix socket `path` (0600; a stale socket file is replaced). */
/** Options of {@linkcode serveCni}. */
export interface ServeCniOptions extends RunPluginOptions {
  /** Called after each request with the CNI command and the plugin's exit code (metrics). */
  readonly onRequest?: (command: string, exitCode: number) => void;
}

export async function serveCni(path: string, options: ServeCniOptions = {}): Promise<CniServer> {
  await Deno.remove(path).catch(() => {});
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const listener = Deno.listen({ transport: "unix", path });
  await Deno.chmod(path, 0o600);
  const inflight = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const conn of listener) {
      const p = handle(conn, options).finally(() => inflight.delete(p));
      inflight.add(p);
    }
  })().catch(() => {});
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    listener.close();
    await loop;
    await Promise.allSettled([...inflight]);
    await Deno.remove(path).catch(() => {});
  };
  return { path, close, [Symbol.asyncDispose]: close };
}

async function handle(conn: Deno.UnixConn, options: ServeCniOptions): Promise<void> {
  try {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(concat(chunks));
    const request = parseRequest(text);
    const outcome = await runPlugin(request, options);
    options.onRequest?.(request.env.CNI_COMMAND ?? "", outcome.exitCode);
    if (outcome.stderr) console.error(outcome.stderr.trimEnd());
    const answer = (outcome.stdout ? `${outcome.stdout}\n` : "") + `#exit=${outcome.exitCode}`;
    await writeAll(conn, new TextEncoder().encode(answer));
  } catch (e) {
    console.error(`skiff cni server: ${(e as Error).message}`);
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

async function writeAll(conn: Deno.UnixConn, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.length) at += await conn.write(data.subarray(at));
}
