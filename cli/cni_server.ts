/**
 * Runs the CNI fast-path server alone (the agent embeds `serveCni` itself):
 * `deno run -A cli/cni_server.ts /run/skiff/cni.sock [HOST_NETNS]` — in the node's network
 * namespace, or anywhere with HOST_NETNS (e.g. /run/netns/node1) where delegates must run.
 * @module
 */

import { serveCni } from "../agent/cni/server.ts";

const path = Deno.args[0] ?? "/run/skiff/cni.sock";
const server = await serveCni(path, { hostNetns: Deno.args[1] });
const stop = async () => {
  await server.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
console.error(`skiff cni server listening on ${path}`);
