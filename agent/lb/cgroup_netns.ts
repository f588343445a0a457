/**
 * The network namespaces of the processes in a cgroup v2 subtree: where sockets that socket LB
 * translated can live (cgroup hooks ignore netns, and a socket iterator walks one netns).
 * @module
 */

/** A netns, named by a /proc path that opens it (valid while that process lives). */
export interface CgroupNetns {
  /** `/proc/<pid>/ns/net` of one process in it. */
  readonly path: string;
  /** The nsfs inode: one per namespace. */
  readonly inode: number;
}

async function pidsOf(dir: string, into: number[]): Promise<void> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/cgroup.procs`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return; // removed while we walked
    throw error;
  }
  for (const line of text.split("\n")) if (line.trim()) into.push(Number(line));
  for await (const entry of Deno.readDir(dir)) {
    // child cgroups: hooks attached to `dir` apply to them too
    if (entry.isDirectory) await pidsOf(`${dir}/${entry.name}`, into);
  }
}

/**
 * One entry per distinct netns of the processes in `cgroup` and its descendants. A process
 * that exits meanwhile is skipped.
 */
export async function cgroupNetns(cgroup: string): Promise<CgroupNetns[]> {
  const pids: number[] = [];
  await pidsOf(cgroup, pids);
  const seen = new Map<string, CgroupNetns>();
  for (const pid of pids) {
    const path = `/proc/${pid}/ns/net`;
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(path);
    } catch {
      continue; // exited
    }
    const id = `${stat.dev}:${stat.ino}`;
    if (!seen.has(id)) seen.set(id, { path, inode: stat.ino ?? 0 });
  }
  return [...seen.values()];
}
