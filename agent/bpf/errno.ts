/**
 * Linux errno numbers (x86-64 / generic) to their names and strerror texts, and BpfError:
 * the one error a BPF map or object operation throws, carrying operation, map and errno name.
 * @module
 */

/** [name, strerror text] by errno number; the ones the bpf(2) syscall and bpffs can return. */
const ERRNOS: ReadonlyMap<number, readonly [string, string]> = new Map([
  [1, ["EPERM", "Operation not permitted"]],
  [2, ["ENOENT", "No such file or directory"]],
  [3, ["ESRCH", "No such process"]],
  [4, ["EINTR", "Interrupted system call"]],
  [5, ["EIO", "Input/output error"]],
  [6, ["ENXIO", "No such device or address"]],
  [7, ["E2BIG", "Argument list too long"]],
  [8, ["ENOEXEC", "Exec format error"]],
  [9, ["EBADF", "Bad file descriptor"]],
  [11, ["EAGAIN", "Resource temporarily unavailable"]],
  [12, ["ENOMEM", "Cannot allocate memory"]],
  [13, ["EACCES", "Permission denied"]],
  [14, ["EFAULT", "Bad address"]],
  [16, ["EBUSY", "Device or resource busy"]],
  [17, ["EEXIST", "File exists"]],
  [18, ["EXDEV", "Invalid cross-device link"]],
  [19, ["ENODEV", "No such device"]],
  [20, ["ENOTDIR", "Not a directory"]],
  [21, ["EISDIR", "Is a directory"]],
  [22, ["EINVAL", "Invalid argument"]],
  [23, ["ENFILE", "Too many open files in system"]],
  [24, ["EMFILE", "Too many open files"]],
  [25, ["ENOTTY", "Inappropriate ioctl for device"]],
  [27, ["EFBIG", "File too large"]],
  [28, ["ENOSPC", "No space left on device"]],
  [30, ["EROFS", "Read-only file system"]],
  [34, ["ERANGE", "Numerical result out of range"]],
  [36, ["ENAMETOOLONG", "File name too long"]],
  [38, ["ENOSYS", "Function not implemented"]],
  [39, ["ENOTEMPTY", "Directory not empty"]],
  [40, ["ELOOP", "Too many levels of symbolic links"]],
  [61, ["ENODATA", "No data available"]],
  [75, ["EOVERFLOW", "Value too large for defined data type"]],
  [95, ["EOPNOTSUPP", "Operation not supported"]],
  [97, ["EAFNOSUPPORT", "Address family not supported by protocol"]],
  [105, ["ENOBUFS", "No buffer space available"]],
  [110, ["ETIMEDOUT", "Connection timed out"]],
  [125, ["ECANCELED", "Operation canceled"]],
  // Kernel-internal, but the bpf(2) syscall leaks it, e.g. for batch ops a map type lacks.
  [524, ["ENOTSUPP", "Operation not supported by this map type"]],
]);

/** errno numbers callers compare against. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  E2BIG: 7,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  EOPNOTSUPP: 95,
  ENOTSUPP: 524,
} as const;

/** The symbolic name of an errno number ("ENOENT"), or "E<n>" for one this table lacks. */
export function errnoName(errno: number): string {
  return ERRNOS.get(errno)?.[0] ?? `E${errno}`;
}

/** The strerror text of an errno number ("No such file or directory"). */
export function errnoText(errno: number): string {
  return ERRNOS.get(errno)?.[1] ?? `Unknown error ${errno}`;
}

/**
 * A failed BPF operation. Message: `Cannot update map "lb_services": E2BIG (Argument list too long)`.
 * Callers branch on `code` (the errno name), not on the message.
 */
export class BpfError extends Error {
  /** The errno name, e.g. "ENOENT". */
  readonly code: string;

  /** `errno` is positive; `detail` is appended to the message. */
  constructor(
    /** What was attempted, a verb: "open", "update", "lookup", "delete", "iterate"… */
    readonly operation: string,
    /** The map's name (kernel name, or the pin path when the map could not be opened). */
    readonly map: string,
    /** The positive errno number. */
    readonly errno: number,
    /** Extra context appended to the message (e.g. "after 12 of 40 elements"). */
    detail?: string,
  ) {
    super(
      `Cannot ${operation} map "${map}": ${errnoName(errno)} (${errnoText(errno)})` +
        (detail ? `, ${detail}` : ""),
    );
    this.name = "BpfError";
    this.code = errnoName(errno);
  }
}
