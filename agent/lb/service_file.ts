/**
 * The desired-state file of Services the CLI edits and the agent reads: JSON
 * `{"services":[…]}` (the human shape of validate.ts). Writers hold an flock on "<file>.lock"
 * (released by the kernel when a process dies, so no stale locks) and replace the file
 * atomically (temp file, fsync, rename, fsync of the directory); readers need no lock.
 * @module
 */
import { dirname, join, resolve } from "node:path";
import type { ServiceEntry, ServiceSnapshot } from "./model.ts";
import { serviceKey } from "./model.ts";
import {
  checkSnapshotConflicts,
  parseSnapshot,
  serviceEntryToJson,
  ServiceValidationError,
} from "./validate.ts";

/** Where the CLI and the agent keep the Services unless told otherwise. */
export const DEFAULT_SERVICES_FILE = "/var/lib/skiff/services.json";

/** The services file cannot be read, parsed, locked or written; nothing was changed. */
export class ServiceFileError extends Error {
  constructor(readonly file: string, message: string, options?: ErrorOptions) {
    super(`${file}: ${message}`, options);
    this.name = "ServiceFileError";
  }
}

/** Options of the functions that change the file. */
export interface ServiceFileOptions {
  /** How long to wait for another writer's lock, in milliseconds (default 10 000). */
  readonly lockTimeoutMs?: number;
}

/** Options of {@linkcode putServices}. */
export interface PutOptions extends ServiceFileOptions {
  /** Names the i-th given entry in errors (default "services[i]"), e.g. as the input did. */
  readonly entryPath?: (index: number) => string;
}

/** What {@linkcode putServices} did, by "namespace/name". */
export interface PutResult {
  readonly added: readonly string[];
  readonly replaced: readonly string[];
}

/**
 * Reads and validates the file. A missing file is an empty snapshot; a corrupt or invalid
 * one throws ServiceFileError saying where the problem is.
 */
export async function readServiceFile(
  file: string = DEFAULT_SERVICES_FILE,
): Promise<ServiceSnapshot> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { services: [] };
    throw new ServiceFileError(file, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ServiceFileError(
      file,
      `is not valid JSON (${(e as Error).message}); fix or remove it, it was left as it is`,
      { cause: e },
    );
  }
  try {
    return parseSnapshot(json);
  } catch (e) {
    if (!(e instanceof ServiceValidationError)) throw e;
    throw new ServiceFileError(file, `holds an invalid Service: ${e.message}`, { cause: e });
  }
}

/**
 * Read-modify-write under the lock: `change` gets the current snapshot and returns the new
 * one, which is checked for conflicts between Services and written atomically (sorted by
 * namespace/name). If `change` or the check throws, the file is not touched.
 */
export async function updateServiceFile(
  file: string,
  change: (current: ServiceSnapshot) => ServiceSnapshot,
  options: ServiceFileOptions = {},
): Promise<ServiceSnapshot> {
  return await withLock(file, options.lockTimeoutMs ?? 10_000, async () => {
    const next = change(await readServiceFile(file));
    checkSnapshotConflicts(next.services);
    const sorted = [...next.services].sort((a, b) =>
      compare(serviceKey(a.service), serviceKey(b.service))
    );
    await writeAtomically(file, render(sorted));
    return { services: sorted };
  });
}

/**
 * Adds the entries, replacing any Service of the same namespace/name (endpoints included).
 * Conflicts are reported against the input: a ServiceValidationError whose path names
 * the i-th entry given (`options.entryPath`, default "services[i]").
 */
export async function putServices(
  file: string,
  entries: readonly ServiceEntry[],
  options: PutOptions = {},
): Promise<PutResult> {
  const entryPath = options.entryPath ?? ((i: number) => `services[${i}]`);
  const added: string[] = [];
  const replaced: string[] = [];
  await updateServiceFile(file, (current) => {
    const incoming = new Set(entries.map((e) => serviceKey(e.service)));
    const kept = current.services.filter((e) => !incoming.has(serviceKey(e.service)));
    const existing = new Set(current.services.map((e) => serviceKey(e.service)));
    // Existing entries first, so a clash is reported on the entry being added, by its index.
    const n = kept.length;
    checkSnapshotConflicts(
      [...kept, ...entries],
      (i) => (i < n ? `existing Service ${serviceKey(kept[i].service)}` : entryPath(i - n)),
    );
    for (const e of entries) {
      (existing.has(serviceKey(e.service)) ? replaced : added).push(serviceKey(e.service));
    }
    return { services: [...kept, ...entries] };
  }, options);
  return { added, replaced };
}

/** Deletes the Service "namespace/name"; returns false (and writes nothing) when it is absent. */
export async function deleteService(
  file: string,
  key: string,
  options: ServiceFileOptions = {},
): Promise<boolean> {
  let found = false;
  await withLock(file, options.lockTimeoutMs ?? 10_000, async () => {
    const current = await readServiceFile(file);
    const kept = current.services.filter((e) => serviceKey(e.service) !== key);
    found = kept.length !== current.services.length;
    if (found) await writeAtomically(file, render(kept));
  });
  return found;
}

function render(services: readonly ServiceEntry[]): string {
  return JSON.stringify({ services: services.map(serviceEntryToJson) }, null, 2) + "\n";
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Runs fn holding an exclusive flock on "<file>.lock". The lock file is never deleted:
 * unlinking a lock file lets a waiter lock an orphaned inode while a newcomer locks a new one.
 */
async function withLock<T>(file: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const lockPath = `${file}.lock`;
  await ensureDir(file);
  let lockFile: Deno.FsFile;
  try {
    lockFile = await Deno.open(lockPath, { read: true, write: true, create: true, mode: 0o644 });
  } catch (e) {
    throw new ServiceFileError(file, `cannot open lock ${lockPath}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const locked = await Promise.race([lockFile.lock(true).then(() => "locked" as const), timeout]);
    clearTimeout(timer);
    if (locked === "timeout") {
      // The pending flock cannot be cancelled; closing the file below releases it if granted.
      const holder = (await Deno.readTextFile(lockPath).catch(() => "")).trim();
      throw new ServiceFileError(
        file,
        `still locked by another skiff process${
          holder ? ` (${holder})` : ""
        } after ${timeoutMs} ms`,
      );
    }
    // Who holds it, for the message above; the lock itself is the flock, not this text.
    await lockFile.truncate(0);
    await lockFile.write(new TextEncoder().encode(`pid ${Deno.pid}\n`));
    return await fn();
  } finally {
    lockFile.close();
  }
}

async function ensureDir(file: string): Promise<void> {
  try {
    await Deno.mkdir(dirname(file), { recursive: true });
  } catch (e) {
    throw new ServiceFileError(file, `cannot create its directory: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** Temp file in the same directory, fsync, rename over the file, fsync the directory. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const dir = dirname(file);
  const tmp = join(
    dir,
    `.${file.slice(dir.length + 1)}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`,
  );
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    try {
      const bytes = new TextEncoder().encode(text);
      let written = 0;
      while (written < bytes.length) written += await f.write(bytes.subarray(written));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, file);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new ServiceFileError(file, `cannot write: ${(e as Error).message}`, { cause: e });
  }
  // The rename is durable only once the directory entry is on disk.
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}

/** A running {@linkcode watchServiceFile}; `close()` (or `using`) stops it. */
export interface ServiceFileWatch extends Disposable {
  close(): void;
}

/**
 * Calls `onChange` soon after the services file is replaced, created or removed (inotify on
 * its directory, since each write renames a new inode over the file; bursts are coalesced
 * over `debounceMs`, default 20). The caller re-reads the file; a change may be reported
 * more than once but is never missed while the watch runs. If the watch itself fails,
 * `onError` gets the error (default: printed to stderr) and the watch ends.
 */
export function watchServiceFile(
  file: string,
  onChange: () => void,
  options: { debounceMs?: number; onError?: (error: Error) => void } = {},
): ServiceFileWatch {
  const dir = dirname(file);
  Deno.mkdirSync(dir, { recursive: true });
  const watcher = Deno.watchFs(dir, { recursive: false });
  const debounceMs = options.debounceMs ?? 20;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const target = resolve(file);
  (async () => {
    try {
      for await (const event of watcher) {
        if (!event.paths.some((p) => resolve(p) === target)) continue;
        clearTimeout(timer);
        timer = setTimeout(() => {
          if (!closed) onChange();
        }, debounceMs);
      }
    } catch (e) {
      if (closed) return;
      const error = new ServiceFileError(file, `watch failed: ${(e as Error).message}`, {
        cause: e,
      });
      (options.onError ?? ((err) => console.error(err.message)))(error);
    }
  })();
  const close = () => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    watcher.close();
  };
  return { close, [Symbol.dispose]: close };
}
