/**
 * CNI errors as the spec defines them: a numeric code, a message and details, printed as JSON
 * on stdout with a non-zero exit. Codes below 100 are the spec's; 100+ are skiff's own.
 * @module
 */

/** The spec's well-known error codes and skiff's plugin-specific ones. */
export const CniCode = {
  /** 1: the config's cniVersion is not one this plugin supports. */
  IncompatibleVersion: 1,
  /** 2: a field in the config is not supported. */
  UnsupportedField: 2,
  /** 3: the container (its netns) is unknown or does not exist. */
  UnknownContainer: 3,
  /** 4: a CNI_* environment variable is missing or invalid. */
  InvalidEnv: 4,
  /** 5: reading or writing a file (stdin, subnet.env, the delegate store) failed. */
  IoFailure: 5,
  /** 6: stdin or a field could not be decoded (broken JSON, wrong JSON type). */
  DecodeFailure: 6,
  /** 7: the config decoded but is not valid (missing name, forbidden delegate keys…). */
  InvalidConfig: 7,
  /** 11: a transient condition (subnet.env not written yet): try again later. */
  TryAgainLater: 11,
  /** 50: STATUS: the plugin cannot service ADD. */
  PluginNotAvailable: 50,
  /** 51: STATUS: not available, and existing containers may have limited connectivity. */
  PluginNotAvailableLimited: 51,
  /** 100: subnet.env exists but its contents are invalid. */
  InvalidSubnetEnv: 100,
  /** 101: the delegate plugin could not be run or answered without a CNI error. */
  DelegateFailed: 101,
  /** 102: CHECK found the Pod's interface, address or routes not as the result says. */
  CheckFailed: 102,
  /** 103: ADD for a container that is already added (the runtime must DEL it first). */
  AlreadyAdded: 103,
} as const;

/** A failure the plugin reports to the runtime as the spec's error JSON. */
export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details = "",
  ) {
    super(message);
    this.name = "CniError";
  }

  /** The spec's error object for this failure, stamped with the answering cniVersion. */
  toJson(cniVersion: string): Record<string, unknown> {
    const out: Record<string, unknown> = { cniVersion, code: this.code, msg: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

/** Reads a CNI error object printed by another plugin; undefined when `text` is not one. */
export function parseCniError(text: string): CniError | undefined {
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && typeof value.code === "number") {
      return new CniError(value.code, String(value.msg ?? ""), String(value.details ?? ""));
    }
  } catch {
    // not JSON: the caller reports the raw output
  }
  return undefined;
}
