/**
 * The saved delegates: one file per container under the data dir (dir 0700, file 0600),
 * written before the delegate runs so that DEL and GC can always undo what ADD started.
 * @module
 */

import { writeFileAtomic } from "./atomic_file.ts";

/** What skiff saves for one attachment. */
export interface SavedDelegate {
  readonly containerID: string;
  readonly ifName: string;
  readonly network: string;
  /** The Pod's netns at ADD time (GC passes it to the delegate's DEL when it still exists). */
  readonly netns?: string;
  /** The delegate config exactly as it was passed to the delegate's ADD. */
  readonly delegate: Record<string, unknown>;
}

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;

/** The file holding the delegate of `containerID`. */
export function delegatePath(dataDir: string, containerID: string): string {
  if (!ID_RE.test(containerID)) throw new TypeError(`"${containerID}" is not a container id`);
  return `${dataDir}/${containerID}`;
}

/** Saves (atomically, fsync'd) the delegate of one container. */
export async function saveDelegate(dataDir: string, saved: SavedDelegate): Promise<void> {
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dataDir, 0o700);
  await writeFileAtomic(delegatePath(dataDir, saved.containerID), JSON.stringify(saved), {
    mode: 0o600,
    dirMode: 0o700,
  });
}

/** The saved delegate of `containerID`; undefined when none is saved. */
export async function loadDelegate(
  dataDir: string,
  containerID: string,
): Promise<SavedDelegate | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(delegatePath(dataDir, containerID));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const value = JSON.parse(text);
  if (value && typeof value === "object" && "delegate" in value) return value as SavedDelegate;
  // a bare delegate config (flannel's layout): no ifname recorded
  return { containerID, ifName: "", network: String(value?.name ?? ""), delegate: value };
}

/** Removes the saved delegate of `containerID`; a missing file is fine. */
export async function removeDelegate(dataDir: string, containerID: string): Promise<void> {
  try {
    await Deno.remove(delegatePath(dataDir, containerID));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Container ids that have a saved delegate (temporary files are skipped). */
export async function listDelegates(dataDir: string): Promise<string[]> {
  const ids: string[] = [];
  try {
    for await (const entry of Deno.readDir(dataDir)) {
      if (entry.isFile && ID_RE.test(entry.name) && !entry.name.endsWith(".tmp")) {
        ids.push(entry.name);
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return ids.sort();
}
