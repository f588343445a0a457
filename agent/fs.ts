/**
 * File-system checks the agent, the CNI plugin and the CLI share.
 * @module
 */

/** True when something is at `path` (a dangling symlink counts: lstat). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** True when `path` resolves to something (symlinks followed: stat). */
export async function targetExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
