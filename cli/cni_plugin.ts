/**
 * Entry point of the skiff CNI plugin executable (run by the `skiff-cni` shim): reads the
 * CNI_* environment and stdin, runs the command, prints the result or error JSON, exits.
 * @module
 */

import { runPlugin } from "../agent/cni/plugin.ts";

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of Deno.stdin.readable) chunks.push(chunk);
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}

const env = Deno.env.toObject();
// VERSION needs no config; do not wait for a stdin the runtime may leave open
const stdin = env.CNI_COMMAND === "VERSION" ? "" : await readStdin();
const outcome = await runPlugin({ env, stdin });
if (outcome.stdout) await Deno.stdout.write(new TextEncoder().encode(outcome.stdout + "\n"));
if (outcome.stderr) await Deno.stderr.write(new TextEncoder().encode(outcome.stderr));
Deno.exit(outcome.exitCode);
