/**
 * The FFI bridge to libbpf.so.1 (and close(2) from libc): one symbol table, opened lazily on
 * first use and cached. Callers pass Uint8Array buffers and get numbers back; no raw pointer
 * leaves this module. libbpf 1.x returns -errno, which `unwrap()` turns into a BpfError.
 * @module
 */
import { BpfError, errnoName, errnoText } from "./errno.ts";

/** libbpf 1.x symbols (libbpf-dev's bpf/bpf.h and bpf/libbpf.h), C prototype beside each. */
export const LIBBPF_SYMBOLS = {
  // int bpf_obj_get(const char *pathname);
  bpf_obj_get: { parameters: ["buffer"], result: "i32" },
  // int bpf_map_lookup_elem(int fd, const void *key, void *value);
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
  bpf_map_update_elem: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" },
  // int bpf_map_delete_elem(int fd, const void *key);
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  // int bpf_map_get_next_key(int fd, const void *key, void *next_key);  key NULL = first
  bpf_map_get_next_key: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
  //                          const struct bpf_map_batch_opts *opts);
  bpf_map_update_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  // int bpf_map_delete_batch(int fd, const void *keys, __u32 *count,
  //                          const struct bpf_map_batch_opts *opts);
  bpf_map_delete_batch: { parameters: ["i32", "buffer", "buffer", "buffer"], result: "i32" },
  // int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys,
  //                          void *values, __u32 *count, const struct bpf_map_batch_opts *opts);
  bpf_map_lookup_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  // int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
  bpf_obj_get_info_by_fd: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int libbpf_num_possible_cpus(void);
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libc symbols: closing an fd is not something libbpf or Deno's API offers. */
export const LIBC_SYMBOLS = {
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int *__errno_location(void);  (glibc: the calling thread's errno)
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** What `libbpf()` returns: the symbol functions, buffers in and numbers out. */
export type Libbpf = Deno.DynamicLibrary<typeof LIBBPF_SYMBOLS>["symbols"];

let libbpfLib: Deno.DynamicLibrary<typeof LIBBPF_SYMBOLS> | undefined;
let libcLib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS> | undefined;
let cpuCount: number | undefined;

/** libbpf's symbols; dlopens libbpf.so.1 on the first call. */
export function libbpf(): Libbpf {
  if (!libbpfLib) {
    try {
      libbpfLib = Deno.dlopen("libbpf.so.1", LIBBPF_SYMBOLS);
    } catch (error) {
      throw new Error(
        `Cannot load libbpf.so.1 (install the Debian package libbpf1; scripts/setup.sh does): ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }
  return libbpfLib.symbols;
}

function libc(): Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"] {
  libcLib ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  return libcLib.symbols;
}

/**
 * Turns a libbpf return code into a value: a negative code throws BpfError naming the
 * operation and the map, anything else is returned as is.
 */
export function unwrap(rc: number, operation: string, map: string, detail?: string): number {
  if (rc < 0) throw new BpfError(operation, map, -rc, detail);
  return rc;
}

/** A NUL-terminated copy of a string, as C wants a path. */
export function cString(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  if (bytes.includes(0)) throw new TypeError(`Path contains a NUL byte: ${JSON.stringify(text)}`);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Opens a pinned BPF object (map, program, link) and returns its fd; throws BpfError. */
export function objGet(path: string, what = path): number {
  return unwrap(libbpf().bpf_obj_get(cString(path)), "open", what);
}

/**
 * Fills `info` (a struct bpf_map_info / bpf_prog_info buffer) for a BPF fd and returns how
 * many bytes the kernel wrote.
 */
export function objGetInfo(fd: number, info: Uint8Array, what: string): number {
  const len = new Uint32Array([info.byteLength]);
  unwrap(libbpf().bpf_obj_get_info_by_fd(fd, info, len), "read info of", what);
  return len[0];
}

/** Closes a file descriptor; throws BpfError (operation "close") if the kernel refuses. */
export function closeFd(fd: number, what: string): void {
  const c = libc();
  if (c.close(fd) === 0) return;
  // Read errno right away: nothing else runs on this thread between the two calls.
  const at = c.__errno_location();
  const errno = at ? new Deno.UnsafePointerView(at).getInt32() : 0;
  throw new BpfError("close", what, errno || 9);
}

/**
 * The number of possible CPUs (not online ones): per-CPU map values hold one slot per
 * possible CPU. Cached after the first call.
 */
export function possibleCpus(): number {
  if (cpuCount === undefined) {
    const rc = libbpf().libbpf_num_possible_cpus();
    if (rc <= 0) {
      throw new Error(`libbpf_num_possible_cpus() failed: ${errnoName(-rc)} (${errnoText(-rc)})`);
    }
    cpuCount = rc;
  }
  return cpuCount;
}
