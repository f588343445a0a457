/**
 * A typed client for build/skiff-loader (bpf/loader, Go on cilium/ebpf): it spawns the loader,
 * sends one JSON request per line, matches responses by id and turns failures into
 * {@linkcode LoaderError}. The protocol (v1) is described in bpf/loader/protocol.go.
 * @module
 */
import { REPO_ROOT } from "./build.ts";

/** The protocol version this client speaks. */
export const LOADER_PROTOCOL_VERSION = 1;

/** Where `deno task build` puts the loader. */
export const DEFAULT_LOADER_PATH: string = `${REPO_ROOT}/build/skiff-loader`;

/** Stable error codes of the loader (`errno` says what the kernel said, when it said something). */
export type LoaderErrorCode =
  | "bad_json"
  | "bad_version"
  | "bad_request"
  | "unknown_op"
  | "not_found"
  | "not_bpffs"
  | "verifier"
  | "incompatible"
  | "conflict"
  | "kernel"
  | "internal"
  /** Client side: the loader exited or could not be started. */
  | "exited";

/** The `error` object of a failed response. */
export interface LoaderErrorBody {
  /** The op that failed. */
  readonly op: string;
  /** What it failed on: an object path, map, program, link, interface or cgroup. */
  readonly object?: string;
  readonly code: LoaderErrorCode;
  /** The errno name (ENOENT, EPERM, EINVAL…), when a system call failed. */
  readonly errno?: string;
  readonly message: string;
  /** The last lines of the verifier log, for code "verifier". */
  readonly verifierLog?: string;
}

/** A request the loader refused or could not carry out. */
export class LoaderError extends Error implements LoaderErrorBody {
  readonly op: string;
  readonly object?: string;
  readonly code: LoaderErrorCode;
  readonly errno?: string;
  readonly verifierLog?: string;

  constructor(body: LoaderErrorBody) {
    const where = body.object ? ` ${body.object}` : "";
    const errno = body.errno ? ` (${body.errno})` : "";
    super(`loader ${body.op || "request"}${where} failed [${body.code}]${errno}: ${body.message}`);
    this.name = "LoaderError";
    this.op = body.op;
    this.object = body.object;
    this.code = body.code;
    this.errno = body.errno;
    this.verifierLog = body.verifierLog;
  }
}

/** `hello`: versions. */
export interface HelloResult {
  readonly protocol: number;
  /** cilium/ebpf module version, e.g. "v0.22.0". */
  readonly ebpf: string;
  readonly go: string;
  readonly pid: number;
  readonly ops: readonly string[];
}

/** `load`: load an object and pin its maps (by name, reused when present) and programs. */
export interface LoadRequest {
  /** Path of a linked BPF object, e.g. build/bpf/counter.o. */
  readonly object: string;
  /** Pin dir on bpffs, /sys/fs/bpf/skiff/<instance>; created if missing. */
  readonly pinDir: string;
  /** max_entries per map name; applies only when the map is created, not when reused. */
  readonly maxEntries?: Readonly<Record<string, number>>;
}

/** A map as loaded or listed. */
export interface LoaderMapInfo {
  readonly name: string;
  /** cilium/ebpf's type name: "Hash", "PerCPUArray", "LRUHash"… */
  readonly type: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  /** `<pinDir>/<name>` for maps pinned by name. */
  readonly pin?: string;
  /** True when the map was already pinned and kept its contents. */
  readonly reused: boolean;
}

/** A program as loaded or listed. */
export interface LoaderProgramInfo {
  readonly name: string;
  /** cilium/ebpf's type name: "SchedCLS", "XDP", "CGroupSockAddr"… */
  readonly type: string;
  readonly id: number;
  /** `<pinDir>/progs/<name>`. */
  readonly pin: string;
}

export interface LoadResult {
  readonly object: string;
  readonly pinDir: string;
  readonly maps: readonly LoaderMapInfo[];
  readonly programs: readonly LoaderProgramInfo[];
}

interface AttachCommon {
  readonly pinDir: string;
  /** A program pinned by `load` (under `<pinDir>/progs/`). */
  readonly program: string;
  /** Link pin name under `<pinDir>/links/`; default `<program>-<kind>-<hook>-<target>[@netns]`. */
  readonly link?: string;
}

/** Attach to tc ingress/egress through a tcx link. */
export interface TcAttachRequest extends AttachCommon {
  readonly kind: "tc";
  readonly iface: string;
  /** Netns path such as /run/netns/NAME; default the loader's own namespace. */
  readonly netns?: string;
  readonly direction: "ingress" | "egress";
}

/** Attach to XDP. */
export interface XdpAttachRequest extends AttachCommon {
  readonly kind: "xdp";
  readonly iface: string;
  readonly netns?: string;
  /** Default: let the kernel choose (driver mode where supported). */
  readonly xdpMode?: "generic" | "driver";
}

/** The cgroup v2 socket hooks skiff uses. */
export type CgroupHook = "connect4" | "sendmsg4" | "recvmsg4" | "getpeername4";

/** Attach to a cgroup v2 socket hook. */
export interface CgroupAttachRequest extends AttachCommon {
  readonly kind: "cgroup";
  /** Absolute cgroup v2 directory (a child: the mount root needs allowCgroupRoot). */
  readonly cgroup: string;
  readonly hook: CgroupHook;
  /** Allow the cgroup2 mount root, which catches every process on the machine. */
  readonly allowCgroupRoot?: boolean;
}

export type AttachRequest = TcAttachRequest | XdpAttachRequest | CgroupAttachRequest;

/** Where a link attaches, as the kernel reports it. */
export interface LinkTarget {
  readonly kind: "tc" | "xdp" | "cgroup" | string;
  readonly linkId: number;
  readonly programId: number;
  /** The kernel's program name (at most 15 characters). */
  readonly programName?: string;
  /** tc, xdp: ifindex inside the namespace it was attached in. */
  readonly ifindex?: number;
  readonly direction?: "ingress" | "egress";
  /** cgroup: the cgroup's id (inode number of its directory). */
  readonly cgroupId?: number;
  readonly hook?: CgroupHook;
}

export interface AttachResult {
  readonly link: string;
  readonly pin: string;
  readonly target: LinkTarget;
  /** The link existed on the same hook and now runs this program (atomic swap). */
  readonly replaced: boolean;
  /** The link existed and already ran this program. */
  readonly unchanged: boolean;
}

export interface DetachRequest {
  readonly pinDir: string;
  readonly link: string;
}

export interface DetachResult {
  readonly link: string;
  /** False when no such link was pinned (detach is idempotent). */
  readonly detached: boolean;
}

export interface LinkEntry extends LinkTarget {
  readonly name: string;
  readonly pin: string;
}

export interface ListResult {
  readonly pinDir: string;
  readonly maps: readonly LoaderMapInfo[];
  readonly programs: readonly LoaderProgramInfo[];
  readonly links: readonly LinkEntry[];
}

export interface RemoveResult {
  readonly pinDir: string;
  /** False when the pin dir did not exist. */
  readonly removed: boolean;
  /** Links detached on the way. */
  readonly detached: number;
}

/** `run_iter`: run a pinned iterator program (SEC("iter/...")) once, reading it to the end. */
export interface RunIterRequest {
  readonly pinDir: string;
  /** An iterator program pinned by `load` (under `<pinDir>/progs/`). */
  readonly program: string;
  /**
   * Netns path (/run/netns/NAME, /proc/PID/ns/net) to open the iterator in: a socket iterator
   * walks that namespace's sockets. Default the loader's own.
   */
  readonly netns?: string;
  /** Bound on the output read; default 1 MiB. */
  readonly maxBytes?: number;
}

export interface RunIterResult {
  readonly program: string;
  readonly netns: string;
  /** Bytes the iterator printed (at most maxBytes). */
  readonly bytes: number;
  /** What it printed, as text. */
  readonly output: string;
  /** True when the output hit maxBytes and the rest of the walk was not done. */
  readonly truncated: boolean;
}

/** Options for {@linkcode LoaderClient.start}. */
export interface LoaderClientOptions {
  /** The loader binary. Default {@linkcode DEFAULT_LOADER_PATH}. */
  path?: string;
  /** Milliseconds to wait for the loader to exit on close before killing it. Default 2000. */
  closeTimeoutMs?: number;
}

interface Pending {
  op: string;
  resolve: (value: Record<string, unknown>) => void;
  reject: (error: Error) => void;
}

const STDERR_KEEP = 4096;

/** One running loader process. Requests may be issued concurrently; the loader answers in order. */
export class LoaderClient implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #stderr = "";
  #closed = false;
  #exited: Promise<Deno.CommandStatus>;
  #reading: Promise<void>;
  #closeTimeoutMs: number;

  private constructor(child: Deno.ChildProcess, closeTimeoutMs: number) {
    this.#child = child;
    this.#closeTimeoutMs = closeTimeoutMs;
    this.#writer = child.stdin.getWriter();
    this.#exited = child.status;
    this.#reading = Promise.all([this.#readStdout(), this.#readStderr()]).then(() => {});
  }

  /** Spawns the loader and checks that it speaks this protocol version. */
  static async start(options: LoaderClientOptions = {}): Promise<LoaderClient> {
    const path = options.path ?? DEFAULT_LOADER_PATH;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(path, { stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
    } catch (error) {
      throw new LoaderError({
        op: "start",
        object: path,
        code: "exited",
        errno: error instanceof Deno.errors.NotFound ? "ENOENT" : undefined,
        message: `cannot start the loader (run \`deno task build\`): ${(error as Error).message}`,
      });
    }
    const client = new LoaderClient(child, options.closeTimeoutMs ?? 2000);
    try {
      const hello = await client.hello();
      if (hello.protocol !== LOADER_PROTOCOL_VERSION) {
        throw new LoaderError({
          op: "hello",
          object: path,
          code: "bad_version",
          message:
            `loader speaks protocol ${hello.protocol}, this client ${LOADER_PROTOCOL_VERSION}`,
        });
      }
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** The loader's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Sends one request and resolves with the response's fields (minus v, id, ok). */
  async request<T>(op: string, fields: object = {}): Promise<T> {
    if (this.#closed) {
      throw new LoaderError({ op, code: "exited", message: "the loader client is closed" });
    }
    const id = this.#nextId++;
    const line = JSON.stringify({ ...fields, v: LOADER_PROTOCOL_VERSION, id, op }) + "\n";
    const response = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.#pending.set(id, { op, resolve, reject });
    });
    try {
      await this.#writer.write(new TextEncoder().encode(line));
    } catch (error) {
      this.#pending.delete(id);
      throw new LoaderError({
        op,
        code: "exited",
        message: `cannot write to the loader: ${(error as Error).message}${this.#stderrTail()}`,
      });
    }
    const result = await response;
    delete result.v;
    delete result.id;
    delete result.ok;
    return result as T;
  }

  hello(): Promise<HelloResult> {
    return this.request<HelloResult>("hello");
  }

  load(request: LoadRequest): Promise<LoadResult> {
    return this.request<LoadResult>("load", request);
  }

  attach(request: AttachRequest): Promise<AttachResult> {
    return this.request<AttachResult>("attach", request);
  }

  detach(request: DetachRequest): Promise<DetachResult> {
    return this.request<DetachResult>("detach", request);
  }

  list(pinDir: string): Promise<ListResult> {
    return this.request<ListResult>("list", { pinDir });
  }

  /** Runs a pinned iterator program once (e.g. sock_destroy_udp) and returns what it printed. */
  runIter(request: RunIterRequest): Promise<RunIterResult> {
    return this.request<RunIterResult>("run_iter", request);
  }

  /** Detaches every link under the pin dir and removes it with all its pins. */
  remove(pinDir: string): Promise<RemoveResult> {
    return this.request<RemoveResult>("remove", { pinDir });
  }

  /** Closes stdin (the loader exits on EOF), waits for it, kills it after the timeout. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#writer.close().catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.#closeTimeoutMs);
      });
      const outcome = await Promise.race([this.#exited, timedOut]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* already gone */ }
      }
    }
    await this.#exited;
    await this.#reading;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #stderrTail(): string {
    const tail = this.#stderr.trim();
    return tail ? `; loader stderr: ${tail.slice(-1000)}` : "";
  }

  #failAll(reason: string): void {
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.reject(
        new LoaderError({
          op: pending.op,
          code: "exited",
          message: `${reason} before answering${this.#stderrTail()}`,
        }),
      );
    }
  }

  #dispatch(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      this.#failAll(`loader wrote a line that is not JSON: ${line.slice(0, 200)}`);
      return;
    }
    const id = message.id;
    const pending = typeof id === "number" ? this.#pending.get(id) : undefined;
    if (!pending) {
      // Only a broken request (id null) gets here; the protocol is out of step.
      this.#failAll(`loader answered an unknown request id ${JSON.stringify(id)}: ${line}`);
      return;
    }
    this.#pending.delete(id as number);
    if (message.ok === true) pending.resolve(message);
    else pending.reject(new LoaderError(message.error as LoaderErrorBody));
  }

  async #readStdout(): Promise<void> {
    let buffer = "";
    try {
      for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line) this.#dispatch(line);
        }
      }
    } finally {
      // Every answer that was written has been dispatched: what is left will never come.
      const status = await this.#exited;
      this.#failAll(`loader exited with code ${status.code}`);
    }
  }

  async #readStderr(): Promise<void> {
    for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      this.#stderr = (this.#stderr + chunk).slice(-STDERR_KEEP);
    }
  }
}
