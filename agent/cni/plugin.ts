/**
 * The skiff CNI plugin (`type: "skiff"`), like flannel's: reads subnet.env, builds a bridge +
 * host-local delegate, saves it, and runs it. `runPlugin` takes the environment and stdin and
 * returns what to print and the exit code, so tests can drive it in-process.
 *
 * How it works: ADD validates everything first (nothing is written for a bad request), saves
 * the delegate (fsync'd) and only then calls it; a failed delegate ADD is undone with DEL.
 * DEL uses the saved delegate, so it works without subnet.env; no saved file = success.
 * @module
 */

import { targetExists } from "../fs.ts";
import { answerVersion, parseConf, parseEnv } from "./config.ts";
import type { PluginEnv, SkiffNetConf } from "./config.ts";
import { buildDelegate } from "./delegate.ts";
import { pickDelegateVersion, pluginVersions } from "./delegate_version.ts";
import { CniCode, CniError } from "./errors.ts";
import { findPlugin, type InvokeArgs, invokePlugin } from "./invoke.ts";
import { checkPodNetwork } from "./check.ts";
import { listDelegates, loadDelegate, removeDelegate, saveDelegate } from "./store.ts";
import type { SavedDelegate } from "./store.ts";
import { readSubnetEnv } from "./subnet_env.ts";
import type { SubnetEnv } from "./subnet_env.ts";
import { convertResult, CURRENT_VERSION, SUPPORTED_VERSIONS, versionAtLeast } from "./version.ts";
import type { CniResult } from "./version.ts";

/** One plugin invocation: the process environment and the bytes on stdin. */
export interface PluginInvocation {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: string;
}

/** What the plugin process prints and how it exits. */
export interface PluginOutcome {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@linkcode runPlugin}. */
export interface RunPluginOptions {
  /**
   * Run the delegate plugins inside this network namespace (a path; the node's) with nsenter,
   * for a caller (the agent's socket server) that does not live in the node's namespace.
   * Default: the caller's own namespace, as for the plugin executable.
   */
  readonly hostNetns?: string;
}

/** The parsed environment plus where delegates run. */
type Ctx = PluginEnv & { readonly hostNetns?: string };

/** Runs one CNI command; never throws: failures are the spec's error JSON and exit code 1. */
export async function runPlugin(
  invocation: PluginInvocation,
  options: RunPluginOptions = {},
): Promise<PluginOutcome> {
  try {
    const env: Ctx = { ...parseEnv(invocation.env), hostNetns: options.hostNetns };
    const out = await dispatch(env, invocation.stdin);
    return { exitCode: 0, stdout: out === undefined ? "" : JSON.stringify(out), stderr: "" };
  } catch (e) {
    const err = e instanceof CniError
      ? e
      : new CniError(CniCode.IoFailure, (e as Error)?.message ?? String(e));
    const answer = answerVersion(invocation.stdin);
    return {
      exitCode: 1,
      stdout: JSON.stringify(err.toJson(answer)),
      stderr: `skiff: ${err.message}${err.details ? `: ${err.details}` : ""}\n`,
    };
  }
}

async function dispatch(env: Ctx, stdin: string): Promise<unknown> {
  if (env.command === "VERSION") {
    return { cniVersion: versionAnswer(stdin), supportedVersions: SUPPORTED_VERSIONS };
  }
  const conf = parseConf(stdin, env.command);
  switch (env.command) {
    case "ADD":
      return await cmdAdd(env, conf);
    case "DEL":
      return await cmdDel(env, conf);
    case "CHECK":
      return await cmdCheck(env, conf);
    case "STATUS":
      return await cmdStatus(env, conf);
    case "GC":
      return await cmdGc(env, conf);
  }
}

function versionAnswer(stdin: string): string {
  try {
    const v = JSON.parse(stdin)?.cniVersion;
    if (typeof v === "string" && SUPPORTED_VERSIONS.includes(v)) return v;
  } catch {
    // VERSION needs no config
  }
  return CURRENT_VERSION;
}

async function requireNetns(netns: string): Promise<void> {
  try {
    await Deno.stat(netns);
  } catch {
    throw new CniError(CniCode.UnknownContainer, `netns "${netns}" does not exist`);
  }
}

function delegateType(conf: SkiffNetConf): string {
  return typeof conf.delegate.type === "string" ? conf.delegate.type : "bridge";
}

async function prepareDelegate(
  env: PluginEnv,
  conf: SkiffNetConf,
  subnet: SubnetEnv,
  cniVersion = conf.cniVersion,
): Promise<{ type: string; delegate: Record<string, unknown>; versions: string[] }> {
  const type = delegateType(conf);
  const binary = await findPlugin(type, env.path);
  const versions = await pluginVersions(binary, conf.dataDir).catch((e) => {
    throw e instanceof CniError ? e : new CniError(CniCode.IoFailure, String(e));
  });
  const version = pickDelegateVersion(cniVersion, versions);
  return { type, delegate: buildDelegate(conf, subnet, version), versions };
}

async function cmdAdd(env: Ctx, conf: SkiffNetConf): Promise<CniResult> {
  await requireNetns(env.netns);
  const subnet = await readSubnetEnv(conf.subnetFile);
  const { type, delegate } = await prepareDelegate(env, conf, subnet);
  // A second ADD must not touch the first one (undoing its failure would DEL the first).
  if (await loadSaved(conf, env.containerId).catch(() => undefined)) {
    throw new CniError(
      CniCode.AlreadyAdded,
      `container ${env.containerId} is already added to ${conf.name}: DEL it first`,
    );
  }
  const saved: SavedDelegate = {
    containerID: env.containerId,
    ifName: env.ifName,
    network: conf.name,
    netns: env.netns,
    delegate,
  };
  try {
    await saveDelegate(conf.dataDir, saved);
  } catch (e) {
    throw new CniError(CniCode.IoFailure, `cannot save the delegate in ${conf.dataDir}`, String(e));
  }
  try {
    const result = await callDelegate(env, type, delegate, { ...invokeArgs(env), command: "ADD" });
    if (!result || !Array.isArray(result.ips)) {
      throw new CniError(CniCode.DelegateFailed, `${type} ADD printed no result with ips`);
    }
    return convertResult(result as unknown as CniResult, conf.cniVersion);
  } catch (e) {
    // undo whatever the delegate did before failing, then forget it
    await callDelegate(env, type, delegate, { ...invokeArgs(env), command: "DEL" }).catch(() => {});
    await removeDelegate(conf.dataDir, env.containerId).catch(() => {});
    throw e;
  }
}

function callDelegate(
  env: Ctx,
  type: string,
  conf: Record<string, unknown>,
  args: InvokeArgs,
): Promise<Record<string, unknown> | undefined> {
  return invokePlugin(type, conf, args, { hostNetns: env.hostNetns });
}

function invokeArgs(env: PluginEnv) {
  return {
    containerId: env.containerId,
    netns: env.netns,
    ifName: env.ifName,
    args: env.args,
    path: env.path,
  };
}

async function loadSaved(
  conf: SkiffNetConf,
  containerId: string,
): Promise<SavedDelegate | undefined> {
  try {
    return await loadDelegate(conf.dataDir, containerId);
  } catch (e) {
    throw new CniError(
      CniCode.IoFailure,
      `cannot read the saved delegate of ${containerId} in ${conf.dataDir}`,
      String(e),
    );
  }
}

async function cmdDel(env: Ctx, conf: SkiffNetConf): Promise<undefined> {
  let delegate: Record<string, unknown>;
  try {
    const saved = await loadDelegate(conf.dataDir, env.containerId);
    if (!saved) return undefined; // never added, or already deleted: DEL is idempotent
    delegate = saved.delegate;
  } catch (e) {
    if (!(e instanceof SyntaxError)) {
      throw new CniError(
        CniCode.IoFailure,
        `cannot read the saved delegate of ${env.containerId} in ${conf.dataDir}`,
        String(e),
      );
    }
    // an unreadable saved delegate must not block DEL forever: rebuild it from subnet.env
    const subnet = await readSubnetEnv(conf.subnetFile);
    delegate = (await prepareDelegate(env, conf, subnet)).delegate;
  }
  const type = String(delegate.type ?? "bridge");
  await callDelegate(env, type, delegate, { ...invokeArgs(env), command: "DEL" });
  await removeDelegate(conf.dataDir, env.containerId);
  return undefined;
}

function asResult(prev: Readonly<Record<string, unknown>>): CniResult {
  const bad = (what: string) => new CniError(CniCode.DecodeFailure, `prevResult: ${what}`);
  for (const key of ["interfaces", "ips", "routes"]) {
    if (prev[key] !== undefined && !Array.isArray(prev[key])) throw bad(`${key} is not an array`);
  }
  for (const ip of (prev.ips ?? []) as unknown[]) {
    if (
      !ip || typeof ip !== "object" || typeof (ip as { address?: unknown }).address !== "string"
    ) {
      throw bad("an ips entry has no address");
    }
  }
  for (const itf of (prev.interfaces ?? []) as unknown[]) {
    if (!itf || typeof itf !== "object" || typeof (itf as { name?: unknown }).name !== "string") {
      throw bad("an interfaces entry has no name");
    }
  }
  for (const r of (prev.routes ?? []) as unknown[]) {
    if (!r || typeof r !== "object" || typeof (r as { dst?: unknown }).dst !== "string") {
      throw bad("a routes entry has no dst");
    }
  }
  return prev as unknown as CniResult;
}

async function cmdCheck(env: Ctx, conf: SkiffNetConf): Promise<undefined> {
  const prev = asResult(conf.prevResult ?? {});
  await requireNetns(env.netns);
  await readSubnetEnv(conf.subnetFile);
  const saved = await loadSaved(conf, env.containerId);
  if (!saved) {
    throw new CniError(
      CniCode.UnknownContainer,
      `no saved delegate for container ${env.containerId}: it was never added to ${conf.name}`,
    );
  }
  // skiff's own look at the Pod first (its messages name what is wrong), then the delegate's
  await checkPodNetwork(env.netns, env.ifName, prev);
  const type = String(saved.delegate.type ?? "bridge");
  const version = String(saved.delegate.cniVersion ?? conf.cniVersion);
  if (versionAtLeast(version, "0.4.0")) {
    await callDelegate(env, type, { ...saved.delegate, prevResult: convertResult(prev, version) }, {
      ...invokeArgs(env),
      command: "CHECK",
    });
  }
  return undefined;
}

async function cmdStatus(env: Ctx, conf: SkiffNetConf): Promise<undefined> {
  let subnet: SubnetEnv;
  try {
    subnet = await readSubnetEnv(conf.subnetFile);
  } catch (e) {
    const err = e as CniError;
    throw new CniError(CniCode.PluginNotAvailable, err.message, err.details);
  }
  if (env.path.length === 0) return undefined; // without CNI_PATH the delegate cannot be asked
  try {
    const { type, delegate, versions } = await prepareDelegate(env, conf, subnet, "1.0.0");
    if (versions.some((v) => versionAtLeast(v, "1.1.0"))) {
      await callDelegate(env, type, { ...delegate, cniVersion: "1.1.0" }, {
        command: "STATUS",
        path: env.path,
      });
    }
  } catch (e) {
    const err = e as CniError;
    throw new CniError(CniCode.PluginNotAvailable, `delegate: ${err.message}`, err.details);
  }
  return undefined;
}

async function cmdGc(env: Ctx, conf: SkiffNetConf): Promise<undefined> {
  const valid = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}/${a.ifname}`));
  const validIds = new Set((conf.validAttachments ?? []).map((a) => a.containerID));
  const failures: string[] = [];
  for (const id of await listDelegates(conf.dataDir)) {
    try {
      const saved = await loadDelegate(conf.dataDir, id);
      if (!saved || saved.network !== conf.name) continue;
      const keep = saved.ifName ? valid.has(`${id}/${saved.ifName}`) : validIds.has(id);
      if (keep) continue;
      const netns = saved.netns && (await targetExists(saved.netns)) ? saved.netns : "";
      await callDelegate(env, String(saved.delegate.type ?? "bridge"), saved.delegate, {
        command: "DEL",
        containerId: id,
        netns,
        ifName: saved.ifName || "eth0",
        path: env.path,
      });
      await removeDelegate(conf.dataDir, id);
    } catch (e) {
      failures.push(`${id}: ${(e as Error).message}`);
    }
  }
  // The spec has a delegating plugin pass GC on; only delegates that speak 1.1.0 can take it.
  try {
    const subnet = await readSubnetEnv(conf.subnetFile);
    const { type, delegate, versions } = await prepareDelegate(env, conf, subnet, "1.0.0");
    if (versions.some((v) => versionAtLeast(v, "1.1.0"))) {
      await callDelegate(env, type, {
        ...delegate,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": conf.validAttachments,
      }, { command: "GC", path: env.path });
    }
  } catch (e) {
    if (!(e instanceof CniError && e.code === CniCode.TryAgainLater)) {
      failures.push(`delegate GC: ${(e as Error).message}`);
    }
  }
  if (failures.length > 0) {
    throw new CniError(CniCode.DelegateFailed, `GC left stale attachments: ${failures.join("; ")}`);
  }
  return undefined;
}
