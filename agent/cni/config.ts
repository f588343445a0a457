/**
 * Parsing a plugin invocation: the CNI_* environment and the network config on stdin, checked
 * in the order the reference skeleton uses (env, decode, name, ids, version, fields), each
 * failure a CniError with the spec's code.
 * @module
 */

import { CniCode, CniError } from "./errors.ts";
import { CURRENT_VERSION, SUPPORTED_VERSIONS, versionAtLeast } from "./version.ts";

/** The CNI commands skiff implements. */
export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION" | "STATUS" | "GC";

const COMMANDS: readonly CniCommand[] = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"];

/** The CNI_* environment of one invocation. */
export interface PluginEnv {
  readonly command: CniCommand;
  readonly containerId: string;
  readonly netns: string;
  readonly ifName: string;
  readonly args: string;
  /** CNI_PATH split on ":". */
  readonly path: readonly string[];
}

/** One `cni.dev/valid-attachments` entry of a GC request. */
export interface Attachment {
  readonly containerID: string;
  readonly ifname: string;
}

/** The skiff plugin's network config, checked. */
export interface SkiffNetConf {
  readonly cniVersion: string;
  readonly name: string;
  readonly type: string;
  /** Path of flannel's subnet.env. Default /run/flannel/subnet.env. */
  readonly subnetFile: string;
  /** Where delegate configs are saved, one file per container. Default /var/lib/cni/skiff. */
  readonly dataDir: string;
  /** host-local's dataDir; host-local's own default when absent. */
  readonly ipamDataDir?: string;
  /** The user's delegate options (hairpinMode, isDefaultGateway, bridge…). */
  readonly delegate: Readonly<Record<string, unknown>>;
  readonly prevResult?: Readonly<Record<string, unknown>>;
  readonly runtimeConfig?: Readonly<Record<string, unknown>>;
  readonly validAttachments?: readonly Attachment[];
}

/** Defaults of the skiff config. */
export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
export const DEFAULT_DATA_DIR = "/var/lib/cni/skiff";

const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
  GC: ["CNI_PATH"],
  STATUS: [],
  VERSION: [],
};

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;

/** Reads and checks the CNI_* variables; throws CniError(4) naming every bad variable. */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): PluginEnv {
  const command = env.CNI_COMMAND ?? "";
  if (command === "") {
    throw new CniError(CniCode.InvalidEnv, "required env variables [CNI_COMMAND] missing");
  }
  if (!COMMANDS.includes(command as CniCommand)) {
    throw new CniError(CniCode.InvalidEnv, `unknown CNI_COMMAND: ${command}`);
  }
  const cmd = command as CniCommand;
  const missing = REQUIRED[cmd].filter((name) => !env[name]);
  if (missing.length > 0) {
    throw new CniError(CniCode.InvalidEnv, `required env variables [${missing.join(",")}] missing`);
  }
  const containerId = env.CNI_CONTAINERID ?? "";
  const ifName = env.CNI_IFNAME ?? "";
  const args = env.CNI_ARGS ?? "";
  if (REQUIRED[cmd].includes("CNI_CONTAINERID") && !NAME_RE.test(containerId)) {
    throw new CniError(
      CniCode.InvalidEnv,
      `CNI_CONTAINERID "${containerId}" has invalid characters (want [a-zA-Z0-9][a-zA-Z0-9_.-]*)`,
    );
  }
  if (REQUIRED[cmd].includes("CNI_IFNAME")) checkIfName(ifName);
  if (args !== "") {
    for (const pair of args.split(";")) {
      if (!/^[^=;]+=[^=;]*$/.test(pair)) {
        throw new CniError(CniCode.InvalidEnv, `CNI_ARGS: "${pair}" is not KEY=VALUE`);
      }
    }
  }
  return {
    command: cmd,
    containerId,
    netns: env.CNI_NETNS ?? "",
    ifName,
    args,
    path: (env.CNI_PATH ?? "").split(":").filter((p) => p !== ""),
  };
}

function checkIfName(name: string): void {
  const bad = name.length === 0 || name.length > 15 || name === "." || name === ".." ||
    /[/:\s]/.test(name);
  if (bad) {
    throw new CniError(
      CniCode.InvalidEnv,
      `CNI_IFNAME "${name}" is not a valid interface name (1-15 chars, no / : or spaces)`,
    );
  }
}

/**
 * Decodes and checks the network config for `command` (not VERSION). Throws CniError: 6 when
 * stdin or a field does not decode to the right JSON type, 7 when a value is invalid, 1 when
 * the cniVersion is not supported or too old for the command.
 */
export function parseConf(stdin: string, command: CniCommand): SkiffNetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(
      CniCode.DecodeFailure,
      `error unmarshalling network config: ${(e as Error).message}`,
    );
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new CniError(CniCode.DecodeFailure, "network config is not a JSON object");
  }
  const conf = raw as Record<string, unknown>;
  const name = optString(conf, "name");
  if (!name) throw new CniError(CniCode.InvalidConfig, "missing network name");
  if (!NAME_RE.test(name)) {
    throw new CniError(
      CniCode.InvalidConfig,
      `network name "${name}" has invalid characters (want [a-zA-Z0-9][a-zA-Z0-9_.-]*)`,
    );
  }
  const cniVersion = optString(conf, "cniVersion");
  if (cniVersion === undefined || cniVersion === "") {
    throw new CniError(CniCode.InvalidConfig, "missing cniVersion");
  }
  if (!SUPPORTED_VERSIONS.includes(cniVersion)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      "incompatible CNI versions",
      `config is "${cniVersion}", plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  }
  const minimum: Partial<Record<CniCommand, string>> = {
    CHECK: "0.4.0",
    STATUS: "1.1.0",
    GC: "1.1.0",
  };
  const min = minimum[command];
  if (min && !versionAtLeast(cniVersion, min)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `config version ${cniVersion} does not allow ${command} (needs ${min} or newer)`,
    );
  }
  const type = optString(conf, "type");
  if (!type) throw new CniError(CniCode.InvalidConfig, "missing plugin type");
  const subnetFile = optPath(conf, "subnetFile") ?? DEFAULT_SUBNET_FILE;
  const dataDir = optPath(conf, "dataDir") ?? DEFAULT_DATA_DIR;
  const ipamDataDir = optPath(conf, "ipamDataDir");
  const delegate = optObject(conf, "delegate") ?? {};
  for (const key of ["name", "ipam"]) {
    if (key in delegate) {
      throw new CniError(
        CniCode.InvalidConfig,
        `"delegate" must not set "${key}": skiff sets the delegate's ${key} itself` +
          (key === "ipam" ? " (host-local on the node subnet from subnet.env)" : ""),
      );
    }
  }
  if ("type" in delegate) {
    const t = delegate.type;
    if (typeof t !== "string") throw wrongType("delegate.type", "a string");
    if (!NAME_RE.test(t)) {
      throw new CniError(CniCode.InvalidConfig, `delegate.type "${t}" is not a plugin name`);
    }
  }
  if ("bridge" in delegate) {
    const b = delegate.bridge;
    if (typeof b !== "string") throw wrongType("delegate.bridge", "a string");
    if (b.length === 0 || b.length > 15 || /[/:\s]/.test(b)) {
      throw new CniError(CniCode.InvalidConfig, `delegate.bridge "${b}" is not an interface name`);
    }
  }
  const prevResult = optObject(conf, "prevResult");
  const runtimeConfig = optObject(conf, "runtimeConfig");
  optObject(conf, "capabilities");
  optObject(conf, "args");
  if (command === "CHECK" && !prevResult) {
    throw new CniError(CniCode.InvalidConfig, "CHECK needs prevResult (the ADD result)");
  }
  let validAttachments: Attachment[] | undefined;
  if (command === "GC") {
    const list = conf["cni.dev/valid-attachments"] ?? conf["cni.dev/attachments"];
    if (list === undefined) {
      throw new CniError(CniCode.InvalidConfig, "GC needs cni.dev/valid-attachments");
    }
    if (!Array.isArray(list)) throw wrongType("cni.dev/valid-attachments", "an array");
    validAttachments = list.map((a, i) => {
      if (!a || typeof a !== "object" || Array.isArray(a)) {
        throw wrongType(`cni.dev/valid-attachments[${i}]`, "an object");
      }
      const { containerID, ifname } = a as Record<string, unknown>;
      if (typeof containerID !== "string") {
        throw wrongType(`cni.dev/valid-attachments[${i}].containerID`, "a string");
      }
      if (typeof ifname !== "string") {
        throw wrongType(`cni.dev/valid-attachments[${i}].ifname`, "a string");
      }
      return { containerID, ifname };
    });
  }
  return {
    cniVersion,
    name,
    type,
    subnetFile,
    dataDir,
    ipamDataDir,
    delegate,
    prevResult,
    runtimeConfig,
    validAttachments,
  };
}

/** The cniVersion to stamp on an error answer: the config's when it is one we speak. */
export function answerVersion(stdin: string): string {
  try {
    const v = JSON.parse(stdin)?.cniVersion;
    if (typeof v === "string" && SUPPORTED_VERSIONS.includes(v)) return v;
  } catch {
    // undecodable config: answer in the newest version
  }
  return CURRENT_VERSION;
}

function wrongType(field: string, want: string): CniError {
  return new CniError(CniCode.DecodeFailure, `field "${field}" must be ${want}`);
}

function optString(conf: Record<string, unknown>, key: string): string | undefined {
  const v = conf[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw wrongType(key, "a string");
  return v;
}

function optPath(conf: Record<string, unknown>, key: string): string | undefined {
  const v = optString(conf, key);
  if (v === undefined) return undefined;
  if (!v.startsWith("/") || v.includes("\0")) {
    throw new CniError(
      CniCode.InvalidConfig,
      `field "${key}" must be an absolute path, got "${v}"`,
    );
  }
  return v;
}

function optObject(
  conf: Record<string, unknown>,
  key: string,
): Record<string, unknown> | undefined {
  const v = conf[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw wrongType(key, "an object");
  return v as Record<string, unknown>;
}
