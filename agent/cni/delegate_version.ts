/**
 * Choosing the spec version to speak to the delegate: the config's own when the delegate
 * supports it, else the newest one with the same result format (1.1.0 config → 1.0.0 bridge of
 * plugins 1.1.1). A delegate's VERSION answer is cached in the data dir by binary identity.
 * @module
 */

import { writeFileAtomic } from "./atomic_file.ts";
import { CniCode, CniError } from "./errors.ts";
import { execPlugin } from "./invoke.ts";
import { compareVersions, versionAtLeast } from "./version.ts";

const CACHE_FILE = ".plugin-versions.json";

interface CacheEntry {
  readonly mtime: number;
  readonly size: number;
  readonly versions: string[];
}

/** The spec versions `binary` supports, from its VERSION answer (cached in `dataDir`). */
export async function pluginVersions(binary: string, dataDir: string): Promise<string[]> {
  const info = await Deno.stat(binary);
  const mtime = info.mtime?.getTime() ?? 0;
  const cachePath = `${dataDir}/${CACHE_FILE}`;
  let cache: Record<string, CacheEntry> = {};
  try {
    cache = JSON.parse(await Deno.readTextFile(cachePath));
  } catch {
    // no cache yet, or a torn one: ask the plugin
  }
  const hit = cache[binary];
  if (hit && hit.mtime === mtime && hit.size === info.size) return hit.versions;
  const out = await execPlugin(binary, '{"cniVersion":"1.0.0"}', { command: "VERSION", path: [] });
  let versions: string[] = [];
  try {
    versions = JSON.parse(out.stdout).supportedVersions;
  } catch {
    // handled below
  }
  if (out.code !== 0 || !Array.isArray(versions)) {
    throw new CniError(
      CniCode.DelegateFailed,
      `${binary} VERSION failed`,
      (out.stderr || out.stdout).slice(-500),
    );
  }
  cache[binary] = { mtime, size: info.size, versions };
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(cachePath, JSON.stringify(cache), { mode: 0o600, dirMode: 0o700 });
  return versions;
}

/**
 * The version to send the delegate for a config of version `wanted`: `wanted` itself when
 * supported, else the newest supported version of the same result format; CniError(1) if none.
 */
export function pickDelegateVersion(wanted: string, supported: readonly string[]): string {
  if (supported.includes(wanted)) return wanted;
  const family = versionAtLeast(wanted, "1.0.0")
    ? (v: string) => versionAtLeast(v, "1.0.0")
    : (v: string) => versionAtLeast(v, "0.3.0") && !versionAtLeast(v, "1.0.0");
  const candidates = supported.filter((v) => family(v) && compareVersions(v, wanted) < 0)
    .sort(compareVersions);
  const best = candidates.at(-1);
  if (!best) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `the delegate supports none of the result formats of ${wanted}`,
      `delegate supports ${JSON.stringify(supported)}`,
    );
  }
  return best;
}
