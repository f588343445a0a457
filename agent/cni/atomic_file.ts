/**
 * Writing a file atomically and durably: a temporary file beside it (mode set at creation),
 * fsync, rename over the target, fsync of the directory. Readers see the old or the new file.
 * @module
 */

/** Options for {@linkcode writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Mode of the file. Default 0o644. */
  mode?: number;
  /** Mode of directories created on the way. Default 0o755. */
  dirMode?: number;
}

/** Writes `text` to `path` atomically (temp file, fsync, rename, fsync of the directory). */
export async function writeFileAtomic(
  path: string,
  text: string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : "/";
  await Deno.mkdir(dir, { recursive: true, mode: options.dirMode ?? 0o755 });
  const tmp = `${dir}/.${path.slice(slash + 1)}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const mode = options.mode ?? 0o644;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true, mode });
    try {
      await file.write(new TextEncoder().encode(text));
      await Deno.chmod(tmp, mode); // the umask may have narrowed the creation mode
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}

/** fsyncs a directory so a rename or removal in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}
