/**
 * Installing the skiff CNI plugin into a CNI bin dir: the `cli/skiff-cni` shim with this
 * project's root baked in, written atomically (0755), and Deno's module cache warmed so the
 * plugin starts from cached modules with no network. Also links reference plugins for labs.
 * @module
 */

import { writeFileAtomic } from "./atomic_file.ts";

/** The project root (the directory holding cli/ and node_modules/). */
import { PROJECT_ROOT } from "../project_root.ts";
export { PROJECT_ROOT };

/** Options for {@linkcode installPlugin}. */
export interface InstallOptions {
  /** File name in the bin dir (the conflist's `type`). Default "skiff". */
  name?: string;
  /** Project root baked into the shim. Default {@linkcode PROJECT_ROOT}. */
  root?: string;
  /**
   * The agent's CNI socket (`serveCni` in server.ts) the shim forwards to when it exists; the
   * shim runs the plugin itself otherwise. Default: none (always run the plugin).
   */
  socket?: string;
}

/** Where the shim keeps Deno's cache for a project root. */
export function denoDir(root: string = PROJECT_ROOT): string {
  return `${root}/build/deno_dir`;
}

/** Installs the plugin shim into `binDir` and warms its module cache; returns the path. */
export async function installPlugin(binDir: string, options: InstallOptions = {}): Promise<string> {
  const root = options.root ?? PROJECT_ROOT;
  const template = await Deno.readTextFile(`${root}/cli/skiff-cni`);
  const line = 'root="${SKIFF_ROOT:-}"';
  if (!template.includes(line)) throw new Error(`cli/skiff-cni lacks the line ${line}`);
  const sockLine = 'sock="${SKIFF_CNI_SOCKET:-}"';
  if (!template.includes(sockLine)) throw new Error(`cli/skiff-cni lacks the line ${sockLine}`);
  const shim = template.replace(line, `root="\${SKIFF_ROOT:-${root}}"`)
    .replace(sockLine, `sock="\${SKIFF_CNI_SOCKET:-${options.socket ?? ""}}"`);
  const target = `${binDir}/${options.name ?? "skiff"}`;
  await warmCache(root);
  await writeFileAtomic(target, shim, { mode: 0o755 });
  return target;
}

/** Fills the shim's Deno cache with the plugin's modules (type-checked once here). */
export async function warmCache(root: string = PROJECT_ROOT): Promise<void> {
  const out = await new Deno.Command(`${root}/node_modules/deno/deno`, {
    args: ["cache", "--no-lock", "--no-config", `${root}/cli/cni_plugin.ts`],
    env: { DENO_DIR: denoDir(root), DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`deno cache cli/cni_plugin.ts failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * Symlinks reference plugins (bridge, host-local, portmap, loopback…) from `from` into
 * `binDir`, so a lab bin dir holds them beside skiff. Existing links are replaced.
 */
export async function linkReferencePlugins(
  binDir: string,
  names: readonly string[] = ["bridge", "host-local", "portmap", "loopback"],
  from = "/usr/lib/cni",
): Promise<void> {
  await Deno.mkdir(binDir, { recursive: true });
  for (const name of names) {
    const target = `${binDir}/${name}`;
    await Deno.remove(target).catch(() => {});
    await Deno.symlink(`${from}/${name}`, target);
  }
}
