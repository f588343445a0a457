/**
 * Temporary runner for `skiff pod …` until cli/skiff.ts (the subcommand table) lands:
 * `deno run -A cli/pod_main.ts add NAME --node N --port 8080:80/tcp`.
 * @module
 */

import { podCommand } from "./commands/pod.ts";

Deno.exit(await podCommand(Deno.args));
