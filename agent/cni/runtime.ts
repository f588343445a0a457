/**
 * The runtime side, like cnitool or a CRI runtime: creates a Pod's netns, runs the conflist's
 * plugins in order with prevResult (runtimeConfig only for declared capabilities), keeps the
 * result in a state dir, CHECKs, and DELs in reverse order with the same runtimeConfig.
 * @module
 */

import { run } from "../net/exec.ts";
import { writeFileAtomic } from "./atomic_file.ts";
import { type Conflist, loadConflist } from "./conflist.ts";
import { CniError } from "./errors.ts";
import { invokePlugin } from "./invoke.ts";
import type { CniResult } from "./version.ts";

/** A hostPort → containerPort mapping (portmap's portMappings capability). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp";
  hostIP?: string;
}

/** Where a node's CNI pieces are, for {@linkcode addPod} and friends. */
export interface PodDriverOptions {
  /** The conflist to load. */
  readonly confFile: string;
  /** CNI_PATH: directories holding the plugins. */
  readonly binDirs: readonly string[];
  /** Directory of the Pod records (one JSON file per Pod). */
  readonly stateDir: string;
  /** Run plugins inside this network namespace (the node's; a path). Default: the current one. */
  readonly hostNetns?: string;
}

/** What the driver remembers of one Pod. */
export interface PodRecord {
  readonly name: string;
  readonly containerId: string;
  /** Path of the Pod's netns, /run/netns/<name>. */
  readonly netns: string;
  readonly ifName: string;
  readonly network: string;
  readonly cniVersion: string;
  readonly hostNetns?: string;
  /** The runtimeConfig values given at ADD (DEL must pass the same). */
  readonly runtimeConfig: { portMappings?: PortMapping[] };
  /** The final ADD result; null while ADD is in progress. */
  readonly result: CniResult | null;
}

/** Options of {@linkcode addPod}. */
export interface AddPodOptions {
  readonly portMappings?: readonly PortMapping[];
  /** Interface name inside the Pod. Default "eth0". */
  readonly ifName?: string;
}

const POD_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,62}$/;

function recordPath(stateDir: string, name: string): string {
  return `${stateDir}/${name}.json`;
}

/** The conf a plugin of the list gets: list name/version, prevResult, its capabilities only. */
export function pluginConf(
  list: Conflist,
  plugin: Record<string, unknown>,
  prevResult: unknown,
  runtimeConfig: Record<string, unknown>,
): Record<string, unknown> {
  const conf: Record<string, unknown> = {
    ...plugin,
    cniVersion: list.cniVersion,
    name: list.name,
  };
  if (prevResult) conf.prevResult = prevResult;
  const caps = plugin.capabilities as Record<string, unknown> | undefined;
  const granted: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(runtimeConfig)) {
    if (caps?.[key] === true && value !== undefined) granted[key] = value;
  }
  if (Object.keys(granted).length > 0) conf.runtimeConfig = granted;
  return conf;
}

/** Creates Pod `name` (netns /run/netns/<name>) and runs the conflist's ADD chain. */
export async function addPod(
  name: string,
  driver: PodDriverOptions,
  options: AddPodOptions = {},
): Promise<PodRecord> {
  if (!POD_NAME_RE.test(name)) {
    throw new TypeError(`pod name "${name}" is invalid (want [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62})`);
  }
  const list = await loadConflist(driver.confFile);
  if (await readRecord(driver.stateDir, name)) throw new Error(`pod "${name}" already exists`);
  const runtimeConfig = options.portMappings?.length
    ? { portMappings: [...options.portMappings] }
    : {};
  let record: PodRecord = {
    name,
    containerId: crypto.randomUUID().replaceAll("-", ""),
    netns: `/run/netns/${name}`,
    ifName: options.ifName ?? "eth0",
    network: list.name,
    cniVersion: list.cniVersion,
    hostNetns: driver.hostNetns,
    runtimeConfig,
    result: null,
  };
  await run(["ip", "netns", "add", name]);
  try {
    await run(["ip", "-n", name, "link", "set", "lo", "up"]);
    // recorded before ADD so that a crash mid-ADD can still be cleaned up by `pod del`
    await writeRecord(driver.stateDir, record);
    let prev: unknown = undefined;
    for (const plugin of list.plugins) {
      const conf = pluginConf(list, plugin, prev, runtimeConfig);
      prev = await callPlugin(String(plugin.type), conf, "ADD", record, driver);
    }
    record = { ...record, result: prev as CniResult };
    await writeRecord(driver.stateDir, record);
    return record;
  } catch (e) {
    await runDel(list, record, driver).catch(() => {});
    await run(["ip", "netns", "del", name], { allowFailure: true });
    await Deno.remove(recordPath(driver.stateDir, name)).catch(() => {});
    throw e;
  }
}

async function callPlugin(
  type: string,
  conf: Record<string, unknown>,
  command: string,
  record: PodRecord,
  driver: PodDriverOptions,
): Promise<Record<string, unknown> | undefined> {
  try {
    return await invokePlugin(type, conf, {
      command,
      containerId: record.containerId,
      netns: record.netns,
      ifName: record.ifName,
      path: driver.binDirs,
    }, { hostNetns: driver.hostNetns });
  } catch (e) {
    if (e instanceof CniError) {
      throw new Error(
        `pod "${record.name}": ${type} ${command} failed (code ${e.code}): ${e.message}` +
          (e.details ? ` (${e.details})` : ""),
        { cause: e },
      );
    }
    throw e;
  }
}

async function runDel(list: Conflist, record: PodRecord, driver: PodDriverOptions): Promise<void> {
  const errors: string[] = [];
  for (const plugin of [...list.plugins].reverse()) {
    const conf = pluginConf(list, plugin, record.result ?? undefined, record.runtimeConfig);
    try {
      await callPlugin(String(plugin.type), conf, "DEL", record, driver);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  if (errors.length > 0) throw new Error(errors.join("; "));
}

/**
 * Runs the DEL chain of Pod `name` in reverse order with the ADD's runtimeConfig, deletes its
 * netns and record. Returns false when no such Pod is recorded (DEL is idempotent).
 */
export async function delPod(name: string, driver: PodDriverOptions): Promise<boolean> {
  const record = await readRecord(driver.stateDir, name);
  if (!record) return false;
  const list = await loadConflist(driver.confFile);
  await runDel(list, record, driver);
  await run(["ip", "netns", "del", name], { allowFailure: true });
  await Deno.remove(recordPath(driver.stateDir, name)).catch(() => {});
  return true;
}

/** Runs the CHECK chain of Pod `name` (unless the list disables it); throws on a failure. */
export async function checkPod(name: string, driver: PodDriverOptions): Promise<void> {
  const record = await readRecord(driver.stateDir, name);
  if (!record) throw new Error(`no pod "${name}"`);
  if (!record.result) throw new Error(`pod "${name}" has no ADD result (ADD did not finish)`);
  const list = await loadConflist(driver.confFile);
  if (list.disableCheck) return;
  const hasIpv6 = (record.result.ips ?? []).some((ip) => ip.address.includes(":"));
  for (const plugin of list.plugins) {
    const conf = pluginConf(list, plugin, record.result, record.runtimeConfig);
    try {
      await callPlugin(String(plugin.type), conf, "CHECK", record, driver);
    } catch (e) {
      // portmap <= 1.1.x CHECKs its IPv6 chain even for an IPv4-only Pod and always fails
      // there (upstream bug); only that exact failure is tolerated, and only without IPv6.
      const cause = (e as Error).cause;
      const upstreamBug = plugin.type === "portmap" && !hasIpv6 && cause instanceof CniError &&
        cause.message.includes("could not check ipv6 dnat");
      if (!upstreamBug) throw e;
    }
  }
}

/** The recorded Pods, by name. */
export async function listPods(driver: Pick<PodDriverOptions, "stateDir">): Promise<PodRecord[]> {
  const pods: PodRecord[] = [];
  try {
    for await (const entry of Deno.readDir(driver.stateDir)) {
      if (!entry.isFile || !entry.name.endsWith(".json") || entry.name.startsWith(".")) continue;
      const record = await readRecord(driver.stateDir, entry.name.slice(0, -5));
      if (record) pods.push(record);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return pods.sort((a, b) => a.name.localeCompare(b.name));
}

/** The record of Pod `name`; undefined when there is none. */
export async function readRecord(stateDir: string, name: string): Promise<PodRecord | undefined> {
  if (!POD_NAME_RE.test(name)) return undefined;
  try {
    return JSON.parse(await Deno.readTextFile(recordPath(stateDir, name)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function writeRecord(stateDir: string, record: PodRecord): Promise<void> {
  await writeFileAtomic(recordPath(stateDir, record.name), JSON.stringify(record, null, 2), {
    mode: 0o600,
    dirMode: 0o700,
  });
}

/** Parses "HOST:CONTAINER[/PROTO]" (PROTO tcp or udp, default tcp). */
export function parsePortMapping(text: string): PortMapping {
  const m = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  const port = (s: string) => {
    const n = Number(s);
    if (n < 1 || n > 65535) throw new TypeError(`port ${s} in "${text}" is not 1..65535`);
    return n;
  };
  if (!m) throw new TypeError(`"${text}" is not HOST:CONTAINER[/tcp|udp]`);
  return {
    hostPort: port(m[1]),
    containerPort: port(m[2]),
    protocol: (m[3] ?? "tcp") as "tcp" | "udp",
  };
}
