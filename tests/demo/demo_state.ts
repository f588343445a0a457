/**
 * What the demo persists in /run/skiff-demo/ (run id, world dir, nodes, Pods, agent pids) and
 * the teardown that works from it alone: after a normal run, on Ctrl-C, and for `demo down`
 * (when the process that built the lab is long gone).
 * @module
 */
import { delPod, type PodDriverOptions } from "../../agent/cni/runtime.ts";
import { type CommandOutput, run } from "../../agent/net/exec.ts";
import { destroyByPrefix, findLeftovers } from "../lab/lab.ts";
import type { Progress } from "./progress.ts";

/** Where a kept demo lab is recorded. */
export const DEMO_DIR = "/run/skiff-demo";
/** The state file inside {@linkcode DEMO_DIR}. */
export const STATE_FILE = `${DEMO_DIR}/state.json`;
const LAB_MARKER_DIR = "/run/skiff-lab";
const ROOT = new URL("../../", import.meta.url).pathname;

/** One lab node as the demo set it up. */
export interface DemoNode {
  readonly name: string;
  readonly nsPath: string;
  readonly ip: string;
  readonly cgroup: string;
  readonly configPath: string;
  readonly unitDir: string;
  readonly logFile: string;
  agentPid?: number;
}

/** One Pod made through the CNI chain. */
export interface DemoPod {
  readonly name: string;
  readonly node: string;
  ip?: string;
}

/** Everything teardown needs. */
export interface DemoState {
  readonly runId: string;
  readonly prefix: string;
  readonly worldDir: string;
  readonly servicesFile: string;
  readonly startedAt: string;
  /** The process that built the lab. */
  readonly pid: number;
  /** A process kept alive in the underlay namespace so the lab is not reaped as dead. */
  keeperPid?: number;
  kept: boolean;
  readonly nodes: DemoNode[];
  readonly pods: DemoPod[];
}

/** The pod driver (CNI runtime) options of a node. */
export function podDriver(state: DemoState, node: DemoNode): PodDriverOptions {
  const base = `${state.worldDir}/${node.name}`;
  return {
    confFile: `${base}/net.d/10-skiff.conflist`,
    binDirs: [`${base}/bin`],
    stateDir: `${base}/state/pods`, // <stateDir>/pods: where `skiff pods` looks
    hostNetns: node.nsPath,
  };
}

/** Writes the state file (atomically). */
export async function saveState(state: DemoState): Promise<void> {
  await Deno.mkdir(DEMO_DIR, { recursive: true });
  const tmp = `${STATE_FILE}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(state, null, 2) + "\n");
  await Deno.rename(tmp, STATE_FILE);
}

/** The recorded state, or undefined when there is none. */
export async function loadState(): Promise<DemoState | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(STATE_FILE)) as DemoState;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${STATE_FILE} is unreadable (${(error as Error).message}); remove it`);
  }
}

/** True when `pid` runs and is not a zombie. */
export function pidAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** True when `pid` is a skiff agent (guards against signalling a recycled pid). */
export function isAgent(pid: number | undefined): boolean {
  if (!pidAlive(pid)) return false;
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes("agent/main.ts");
  } catch {
    return false;
  }
}

/** Runs `skiff ARGS` (cli/skiff.ts) inside a network namespace. */
export function skiffIn(nsPath: string, args: string[], stdin?: string): Promise<CommandOutput> {
  return run([Deno.execPath(), "run", "-A", `${ROOT}cli/skiff.ts`, ...args], {
    netns: nsPath,
    allowFailure: true,
    stdin,
  });
}

/**
 * Kills what runs in a Pod's netns (its socat server). A kept lab's servers belong to a demo
 * process that has exited; once the netns is deleted nothing would find them again.
 */
async function killPodProcesses(pod: string): Promise<void> {
  const out = await run(["ip", "netns", "pids", pod], { allowFailure: true });
  for (const pid of out.stdout.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Options of {@linkcode teardown}. */
export interface TeardownOptions {
  /** Also remove the lab's namespaces, cgroups, pins and marker (the lab object is gone). */
  readonly destroyLab: boolean;
}

/**
 * Undoes the demo in reverse: Pods (CNI DEL), agents (SIGTERM, then SIGKILL after 10 s),
 * `skiff uninstall` on each node, the lab (when asked), the world dir, the state file.
 * Every step runs even when an earlier one failed.
 */
export async function teardown(
  state: DemoState,
  progress: Progress,
  options: TeardownOptions,
): Promise<void> {
  const soft = async <T>(title: string, body: () => Promise<T>, done?: (r: T) => string) => {
    try {
      await progress.step(title, body, done);
    } catch { /* reported by the step; go on */ }
  };
  const nodeByName = new Map(state.nodes.map((n) => [n.name, n]));
  await soft("Deleting the Pods through the CNI chain (DEL)", async () => {
    let n = 0;
    const errors: string[] = [];
    for (const pod of state.pods) {
      const node = nodeByName.get(pod.node)!;
      await killPodProcesses(pod.name);
      try {
        if (await delPod(pod.name, podDriver(state, node))) n++;
      } catch (error) {
        errors.push(`${pod.name}: ${(error as Error).message}`);
        await run(["ip", "netns", "del", pod.name], { allowFailure: true });
      }
    }
    if (errors.length) throw new Error(errors.join("; "));
    return n;
  }, (n) => `${n} Pods deleted`);
  await soft("Stopping the agents (SIGTERM; the data plane stays until uninstall)", async () => {
    const running = state.nodes.filter((n) => isAgent(n.agentPid));
    for (const n of running) Deno.kill(n.agentPid!, "SIGTERM");
    const end = Date.now() + 10_000;
    while (running.some((n) => pidAlive(n.agentPid)) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const stuck = running.filter((n) => pidAlive(n.agentPid));
    for (const n of stuck) Deno.kill(n.agentPid!, "SIGKILL");
    if (stuck.length) throw new Error(`killed ${stuck.map((n) => n.name).join(", ")} after 10 s`);
    return running.length;
  }, (n) => `${n} agents stopped`);
  await soft("Uninstalling skiff from every node (skiff uninstall)", async () => {
    const failed: string[] = [];
    let done = 0;
    for (const node of state.nodes) {
      if (!(await exists(node.nsPath)) || !(await exists(node.configPath))) continue;
      const out = await skiffIn(node.nsPath, [
        "uninstall",
        "-c",
        node.configPath,
        "--unit-dir",
        node.unitDir,
      ]);
      if (out.code !== 0) failed.push(`${node.name}: ${(out.stdout + out.stderr).trim()}`);
      else done++;
    }
    if (failed.length) throw new Error(failed.join("\n"));
    return done;
  }, (n) => `${n} nodes uninstalled`);
  if (options.destroyLab) {
    await soft("Destroying the lab (namespaces, cgroups, pins)", async () => {
      for (const pid of [state.keeperPid, ...state.nodes.map((n) => n.agentPid)]) {
        if (pidAlive(pid)) Deno.kill(pid!, "SIGKILL");
      }
      await destroyByPrefix(state.prefix);
      await Deno.remove(`${LAB_MARKER_DIR}/${state.runId}.json`).catch(() => {});
      const left = await findLeftovers(state.prefix);
      const count = Object.values(left).reduce((s, l) => s + l.length, 0);
      if (count) throw new Error(`left behind: ${JSON.stringify(left)}`);
    }, () => `nothing named ${state.prefix}* is left`);
  }
  await Deno.remove(state.worldDir, { recursive: true }).catch(() => {});
  await Deno.remove(STATE_FILE).catch(() => {});
  await Deno.remove(DEMO_DIR).catch(() => {});
}
