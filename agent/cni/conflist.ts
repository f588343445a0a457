/**
 * The network configuration list skiff's agent writes for the runtime (skiff with its delegate
 * options, then portmap with the portMappings capability), written atomically, and the loader
 * the runtime side uses to read one back with checks.
 * @module
 */

import { writeFileAtomic } from "./atomic_file.ts";
import { compareVersions, SUPPORTED_VERSIONS } from "./version.ts";

/** The conflist's path on a node. */
export const DEFAULT_CONFLIST_PATH = "/etc/cni/net.d/10-skiff.conflist";

/** Options of the skiff conflist; every field has a default. */
export interface ConflistOptions {
  /** Network name. Default "skiff". */
  name?: string;
  /** Spec version of the list. Default "1.0.0" (the newest the Debian reference plugins take). */
  cniVersion?: string;
  /** subnet.env path given to the plugin. Default: the plugin's default. */
  subnetFile?: string;
  /** The plugin's delegate store. Default: the plugin's default. */
  dataDir?: string;
  /** host-local's dataDir. Default: host-local's default. */
  ipamDataDir?: string;
  /** Delegate options (hairpinMode, isDefaultGateway, bridge…). Default flannel's: hairpin + default gw. */
  delegate?: Record<string, unknown>;
  /** The bridge's name (delegate.bridge). Default: the plugin's ("cni0"). */
  bridge?: string;
  /** Chain portmap for hostPorts. Default true. */
  portmap?: boolean;
}

/** A network configuration list. */
export interface Conflist {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: Record<string, unknown>[];
}

/** Builds the skiff conflist (pure). */
export function buildConflist(options: ConflistOptions = {}): Conflist {
  const skiff: Record<string, unknown> = { type: "skiff" };
  if (options.subnetFile) skiff.subnetFile = options.subnetFile;
  if (options.dataDir) skiff.dataDir = options.dataDir;
  if (options.ipamDataDir) skiff.ipamDataDir = options.ipamDataDir;
  skiff.delegate = options.delegate ?? { hairpinMode: true, isDefaultGateway: true };
  if (options.bridge) skiff.delegate = { ...skiff.delegate as object, bridge: options.bridge };
  const plugins = [skiff];
  if (options.portmap ?? true) {
    plugins.push({ type: "portmap", capabilities: { portMappings: true }, snat: true });
  }
  return { cniVersion: options.cniVersion ?? "1.0.0", name: options.name ?? "skiff", plugins };
}

/** Writes the skiff conflist to `path` atomically (0644); returns what was written. */
export async function writeConflist(
  path: string = DEFAULT_CONFLIST_PATH,
  options: ConflistOptions = {},
): Promise<Conflist> {
  const list = buildConflist(options);
  await writeFileAtomic(path, JSON.stringify(list, null, 2) + "\n", { mode: 0o644 });
  return list;
}

/** Reads and checks a conflist (name, cniVersion, plugins with types); throws TypeError. */
export async function loadConflist(path: string): Promise<Conflist> {
  const text = await Deno.readTextFile(path);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`${path}: not JSON: ${(e as Error).message}`);
  }
  const list = value as Partial<Conflist>;
  if (!list || typeof list !== "object") throw new TypeError(`${path}: not an object`);
  if (typeof list.name !== "string" || list.name === "") {
    throw new TypeError(`${path}: "name" is missing`);
  }
  // spec 1.1: `cniVersions` lists the versions the list can be run with; take the newest we speak
  const versions = (list as { cniVersions?: unknown }).cniVersions;
  if (Array.isArray(versions)) {
    const usable = versions.filter((v): v is string =>
      typeof v === "string" && SUPPORTED_VERSIONS.includes(v)
    ).sort(compareVersions);
    if (usable.length === 0) {
      throw new TypeError(
        `${path}: none of "cniVersions" ${JSON.stringify(versions)} is supported`,
      );
    }
    list.cniVersion = usable.at(-1)!;
  }
  if (typeof list.cniVersion !== "string" || !SUPPORTED_VERSIONS.includes(list.cniVersion)) {
    throw new TypeError(
      `${path}: "cniVersion" ${JSON.stringify(list.cniVersion)} is not supported`,
    );
  }
  if (!Array.isArray(list.plugins) || list.plugins.length === 0) {
    throw new TypeError(`${path}: "plugins" must be a non-empty array`);
  }
  list.plugins.forEach((p, i) => {
    if (!p || typeof p !== "object" || typeof p.type !== "string") {
      throw new TypeError(`${path}: plugins[${i}] has no "type"`);
    }
  });
  return list as Conflist;
}
