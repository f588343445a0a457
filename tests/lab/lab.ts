/**
 * The lab: a throw-away multi-node world on this machine, built from network namespaces.
 * A node is a netns on an underlay bridge (which lives in its own netns), with a cgroup v2
 * child and a bpffs pin dir of its own; every kernel name starts with "sk" + a run id.
 *
 * How it works: before creating anything, a marker /run/skiff-lab/<runId>.json records the
 * owning pid; teardown runs on dispose, on failure and on Ctrl-C; a run that died (SIGKILL)
 * leaves its marker, and the next createLab() removes everything of runs whose owner is gone.
 * @module
 */
import { type CommandOutput, run, type RunOptions } from "../../agent/net/exec.ts";

/** Where socket-hook cgroups are made (never the root itself). */
export const CGROUP_ROOT = "/sys/fs/cgroup/unified";
/** Where pin dirs are made. */
export const PIN_ROOT = "/sys/fs/bpf/skiff";
const MARKER_DIR = "/run/skiff-lab";

/** The underlay network all nodes and the outside host share. */
export const UNDERLAY = { prefix: "192.168.100", gateway: "192.168.100.1", len: 24 } as const;

/** A network namespace of the lab. */
export interface LabHost {
  /** Netns name, e.g. "skab12n1". */
  readonly name: string;
  /** Same as name (kept for readability at call sites). */
  readonly ns: string;
  /** /run/netns/<name>, for nsenter --net=. */
  readonly nsPath: string;
  /** The host's address on the underlay, where it has one. */
  readonly ip?: string;
  /** Runs a command inside this namespace (nsenter --net, so bpffs and cgroups stay visible). */
  run(argv: readonly string[], options?: Omit<RunOptions, "netns">): Promise<CommandOutput>;
}

/** A lab node: a host on the underlay with a cgroup and a pin dir. */
export interface LabNode extends LabHost {
  readonly index: number;
  readonly ip: string;
  /** Uplink interface inside the node namespace. */
  readonly uplink: string;
  /** Absolute path of the node's cgroup v2 child. */
  readonly cgroup: string;
  /** The node's bpffs pin dir, /sys/fs/bpf/skiff/<name>. */
  readonly pinDir: string;
}

/** Options for {@linkcode createLab}. */
export interface LabOptions {
  /** Number of nodes (default 3). */
  nodes?: number;
  /** Make an "outside" host on the underlay (default true). */
  outside?: boolean;
}

/** What a run may leave behind; empty lists mean a clean teardown. */
export interface Leftovers {
  readonly namespaces: string[];
  readonly cgroups: string[];
  readonly pins: string[];
  readonly processes: number[];
}

interface Marker {
  pid: number;
  created: string;
}

function makeHost(name: string, ip?: string): LabHost {
  const nsPath = `/run/netns/${name}`;
  return {
    name,
    ns: name,
    nsPath,
    ip,
    run: (argv, options = {}) => run(argv, { ...options, netns: nsPath }),
  };
}

function randomRunId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function listNames(dir: string, prefix: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(prefix)) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

function pidAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** Lists every kernel object and process with the given name prefix ("sk" + run id). */
export async function findLeftovers(prefix: string): Promise<Leftovers> {
  const namespaces = await listNames("/run/netns", prefix);
  const processes: number[] = [];
  for (const ns of namespaces) {
    const out = await run(["ip", "netns", "pids", ns], { allowFailure: true });
    processes.push(...out.stdout.split(/\s+/).filter(Boolean).map(Number));
  }
  return {
    namespaces,
    cgroups: await listNames(CGROUP_ROOT, prefix),
    pins: await listNames(PIN_ROOT, prefix),
    processes,
  };
}

async function killCgroupProcesses(path: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    let pids: number[] = [];
    try {
      pids = (await Deno.readTextFile(`${path}/cgroup.procs`)).split("\n").filter(Boolean).map(
        Number,
      );
    } catch {
      return;
    }
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Removes everything named with `prefix`: processes in its namespaces and cgroups, the
 * namespaces (and so their veths, bridges and tc/XDP attachments), cgroups (and so their
 * socket hooks) and pin dirs. Safe to call more than once.
 */
export async function destroyByPrefix(prefix: string): Promise<void> {
  if (!/^sk[a-z0-9]{2,}/.test(prefix)) throw new Error(`refusing to destroy prefix "${prefix}"`);
  const found = await findLeftovers(prefix);
  for (const pid of found.processes) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  for (const cg of found.cgroups) {
    await killCgroupProcesses(`${CGROUP_ROOT}/${cg}`);
  }
  for (const pin of found.pins) {
    await Deno.remove(`${PIN_ROOT}/${pin}`, { recursive: true }).catch(() => {});
  }
  for (const ns of found.namespaces) {
    await run(["ip", "netns", "del", ns], { allowFailure: true });
  }
  for (const cg of found.cgroups) {
    // A cgroup goes once its last process has exited; retry briefly.
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await Deno.remove(`${CGROUP_ROOT}/${cg}`);
        break;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) break;
        await killCgroupProcesses(`${CGROUP_ROOT}/${cg}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

/** Removes the worlds of earlier runs whose owning process is gone (a crash or SIGKILL). */
export async function reapDeadRuns(): Promise<string[]> {
  const reaped: string[] = [];
  for (const file of await listNames(MARKER_DIR, "")) {
    if (!file.endsWith(".json")) continue;
    const runId = file.slice(0, -5);
    let marker: Marker | undefined;
    try {
      marker = JSON.parse(await Deno.readTextFile(`${MARKER_DIR}/${file}`));
    } catch { /* unreadable: treat as dead */ }
    if (marker && pidAlive(marker.pid)) continue;
    await destroyByPrefix(`sk${runId}`);
    await Deno.remove(`${MARKER_DIR}/${file}`).catch(() => {});
    reaped.push(runId);
  }
  return reaped;
}

async function ensureBpffs(): Promise<void> {
  const mounts = await Deno.readTextFile("/proc/self/mounts");
  if (!mounts.split("\n").some((l) => l.split(" ")[1] === "/sys/fs/bpf" && l.includes(" bpf "))) {
    await run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"]);
  }
  await Deno.mkdir(PIN_ROOT, { recursive: true });
}

const activeLabs = new Set<Lab>();
let signalsInstalled = false;

function installSignalTeardown(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  const onSignal = async () => {
    for (const lab of [...activeLabs]) await lab.destroy().catch(() => {});
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
}

/** Options for {@linkcode Lab.spawn}. */
export interface SpawnOptions {
  /** Put the process in this cgroup (e.g. a node's `cgroup`) before it execs. */
  cgroup?: string;
  /** stdout/stderr handling (default "piped" for stdout, "inherit"… see Deno.Command). */
  stdout?: "piped" | "inherit" | "null";
  stderr?: "piped" | "inherit" | "null";
  stdin?: "piped" | "inherit" | "null";
  env?: Record<string, string>;
}

/** A built lab; dispose it (`await using`) or call destroy(). */
export class Lab implements AsyncDisposable {
  readonly prefix: string;
  readonly nodes: LabNode[] = [];
  readonly hosts: LabHost[] = [];
  underlay!: LabHost;
  outside!: LabHost;
  #children = new Set<Deno.ChildProcess>();
  #teardown: (() => Promise<void>)[] = [];
  #destroyed = false;

  constructor(readonly runId: string) {
    this.prefix = `sk${runId}`;
  }

  /** Adds an empty namespace named prefix+suffix (e.g. a pod), removed at teardown. */
  async addHost(suffix: string, ip?: string): Promise<LabHost> {
    const name = `${this.prefix}${suffix}`;
    if (name.length > 15) throw new Error(`lab host name "${name}" is longer than 15 characters`);
    await run(["ip", "netns", "add", name]);
    const host = makeHost(name, ip);
    await host.run(["ip", "link", "set", "lo", "up"]);
    this.hosts.push(host);
    return host;
  }

  /** A veth pair between two hosts, `ifA` in `a` and `ifB` in `b`, both up. */
  async connect(a: LabHost, ifA: string, b: LabHost, ifB: string): Promise<void> {
    await run([
      "ip",
      "-n",
      a.name,
      "link",
      "add",
      ifA,
      "type",
      "veth",
      "peer",
      "name",
      ifB,
      "netns",
      b.name,
    ]);
    await run(["ip", "-n", a.name, "link", "set", ifA, "up"]);
    await run(["ip", "-n", b.name, "link", "set", ifB, "up"]);
  }

  /** Joins a host to the underlay bridge with the given last octet; returns its address. */
  async joinUnderlay(host: LabHost, octet: number, ifname = "eth0"): Promise<string> {
    const ip = `${UNDERLAY.prefix}.${octet}`;
    const port = `${host.name.slice(this.prefix.length)}`.slice(0, 15);
    await this.connect(host, ifname, this.underlay, port);
    await run(["ip", "-n", this.underlay.name, "link", "set", port, "master", "br0"]);
    await host.run(["ip", "addr", "add", `${ip}/${UNDERLAY.len}`, "dev", ifname]);
    await host.run(["ip", "route", "add", "default", "via", UNDERLAY.gateway]);
    return ip;
  }

  /**
   * Starts a long-running process inside a host's namespace (and optionally a cgroup); it is
   * killed at teardown. The returned child's stdout is piped unless said otherwise.
   */
  spawn(host: LabHost, argv: readonly string[], options: SpawnOptions = {}): Deno.ChildProcess {
    const inner = options.cgroup
      ? ["sh", "-c", `echo $$ > ${options.cgroup}/cgroup.procs && exec "$@"`, "sh", ...argv]
      : [...argv];
    const child = new Deno.Command("nsenter", {
      args: [`--net=${host.nsPath}`, "--", ...inner],
      stdin: options.stdin ?? "null",
      stdout: options.stdout ?? "piped",
      stderr: options.stderr ?? "piped",
      env: options.env,
    }).spawn();
    this.#children.add(child);
    child.status.finally(() => this.#children.delete(child));
    return child;
  }

  /**
   * Registers a graceful cleanup (e.g. CNI DEL of Pods, stopping agents) that destroy() runs
   * first, latest registered first, while the lab's processes and namespaces still exist; it
   * runs on Ctrl-C too. Its errors are ignored: the kernel objects go by prefix afterwards.
   */
  onTeardown(fn: () => Promise<void>): void {
    this.#teardown.push(fn);
  }

  /** Removes everything of this run. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const fn of this.#teardown.reverse()) await fn().catch(() => {});
    for (const child of this.#children) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status.catch(() => {});
      // Reading .stdout of a child spawned with "null" throws: only cancel piped streams.
      for (const stream of ["stdout", "stderr"] as const) {
        try {
          await child[stream].cancel();
        } catch { /* not piped, or already consumed */ }
      }
    }
    await destroyByPrefix(this.prefix);
    await Deno.remove(`${MARKER_DIR}/${this.runId}.json`).catch(() => {});
    activeLabs.delete(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

async function setSysctl(host: LabHost, pairs: Record<string, string>): Promise<void> {
  await host.run(["sysctl", "-q", "-w", ...Object.entries(pairs).map(([k, v]) => `${k}=${v}`)]);
}

/** Builds a lab: underlay, nodes (each with cgroup and pin dir) and an outside host. */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  const nodeCount = options.nodes ?? 3;
  if (nodeCount < 1 || nodeCount > 9) throw new RangeError("a lab has 1 to 9 nodes");
  await reapDeadRuns();
  await ensureBpffs();
  await Deno.mkdir(MARKER_DIR, { recursive: true });
  const lab = new Lab(randomRunId());
  const marker: Marker = { pid: Deno.pid, created: new Date().toISOString() };
  await Deno.writeTextFile(`${MARKER_DIR}/${lab.runId}.json`, JSON.stringify(marker));
  activeLabs.add(lab);
  installSignalTeardown();
  try {
    lab.underlay = await lab.addHost("u", UNDERLAY.gateway);
    await lab.underlay.run(["ip", "link", "add", "br0", "type", "bridge"]);
    await lab.underlay.run([
      "ip",
      "addr",
      "add",
      `${UNDERLAY.gateway}/${UNDERLAY.len}`,
      "dev",
      "br0",
    ]);
    await lab.underlay.run(["ip", "link", "set", "br0", "up"]);
    await setSysctl(lab.underlay, {
      "net.ipv4.conf.all.send_redirects": "0",
      "net.ipv4.conf.default.send_redirects": "0",
    });
    await Promise.all(Array.from({ length: nodeCount }, async (_, i) => {
      const index = i + 1;
      const host = await lab.addHost(`n${index}`);
      const ip = await lab.joinUnderlay(host, 10 + index);
      await setSysctl(host, {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.all.send_redirects": "0",
        "net.ipv4.conf.default.send_redirects": "0",
      });
      const cgroup = `${CGROUP_ROOT}/${host.name}`;
      await Deno.mkdir(cgroup);
      const pinDir = `${PIN_ROOT}/${host.name}`;
      await Deno.mkdir(pinDir);
      lab.nodes[i] = { ...host, ip, index, uplink: "eth0", cgroup, pinDir };
    }));
    if (options.outside ?? true) {
      const outside = await lab.addHost("o");
      const ip = await lab.joinUnderlay(outside, 250);
      lab.outside = { ...outside, ip };
    }
    return lab;
  } catch (error) {
    await lab.destroy();
    throw error;
  }
}

/** True when the path exists (exported for teardown checks). */
export { exists as pathExists };
