/**
 * Agents in the lab: one skiff agent per lab node, started with the systemd unit's own
 * ExecStart line (inside the node's network namespace, as on a real node), on a shared
 * embedded store and a shared services file; helpers to wait for readiness and query the
 * agent's endpoints from inside the node.
 * @module
 */
import { execEnvironment, execStartArgv, renderUnit } from "../../agent/systemd/unit.ts";
import type { Lab, LabNode } from "../lab/lab.ts";
import { run } from "../../agent/net/exec.ts";

/** The cluster network the lab agents share. */
export const LAB_NETWORK = { Network: "10.244.0.0/16", SubnetLen: 24, Backend: { Type: "vxlan" } };

/** One running agent. */
export interface LabAgent {
  readonly node: LabNode;
  readonly configPath: string;
  readonly config: Record<string, unknown>;
  child: Deno.ChildProcess;
  /** Lines the agent logged so far (stderr), unless it logs to {@linkcode logFile}. */
  readonly logs: string[];
  /** Where the agent's stdout and stderr go, when started with `logFile` (like the journal). */
  logFile?: string;
}

/** Options of {@linkcode startAgent}. */
export interface StartAgentOptions {
  /**
   * Append the agent's output to this file instead of piping it to the test (as systemd sends
   * it to the journal); the agent then outlives this process without a broken pipe.
   */
  readonly logFile?: string;
}

/** Paths shared by the agents of one lab. */
export interface AgentWorld {
  readonly dir: string;
  readonly servicesFile: string;
  readonly storeDir: string;
  readonly agents: LabAgent[];
}

/** Per-node config for a lab agent. */
export function labConfig(world: AgentWorld, node: LabNode, extra: Record<string, unknown> = {}) {
  const base = `${world.dir}/${node.name}`;
  return {
    nodeName: node.name,
    stateDir: `${base}/state`,
    pinDir: node.pinDir,
    cgroupPath: node.cgroup,
    network: LAB_NETWORK,
    store: { type: "embedded", dir: world.storeDir },
    servicesFile: world.servicesFile,
    cni: {
      confDir: `${base}/net.d`,
      binDir: `${base}/bin`,
      subnetFile: `${base}/subnet.env`,
      bridge: "cni0",
      dataDir: `${base}/cni-delegates`,
      ipamDataDir: `${base}/cni-ipam`,
      socket: `${base}/cni.sock`,
    },
    healthAddress: "0.0.0.0:10256",
    metricsAddress: "127.0.0.1:10249",
    log: { level: "debug", format: "json" },
    resyncSeconds: 5,
    ...extra,
  };
}

/** Makes the shared dirs (removed by {@linkcode removeAgentWorld}). */
export async function createAgentWorld(lab: Lab): Promise<AgentWorld> {
  const dir = await Deno.makeTempDir({ prefix: `skiff-${lab.prefix}-` });
  return { dir, servicesFile: `${dir}/services.json`, storeDir: `${dir}/store`, agents: [] };
}

/** Stops agents still running and removes the world's files. */
export async function removeAgentWorld(world: AgentWorld): Promise<void> {
  for (const a of world.agents) {
    try {
      a.child.kill("SIGKILL");
    } catch { /* gone */ }
    await a.child.status.catch(() => {});
  }
  await Deno.remove(world.dir, { recursive: true }).catch(() => {});
}

async function pump(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    const lines = rest.split("\n");
    rest = lines.pop()!;
    into.push(...lines);
  }
}

/** The project root, for running the CLI. */
export const ROOT = new URL("../../", import.meta.url).pathname;

/** Runs `skiff ARGS` (cli/skiff.ts) inside the node's namespace. */
export function skiff(node: LabNode, args: string[], stdin?: string) {
  return node.run([Deno.execPath(), "run", "-A", `${ROOT}cli/skiff.ts`, ...args], {
    allowFailure: true,
    stdin,
  });
}

/** Writes a node's config file (what `skiff install` and the agent read). */
export async function writeNodeConfig(
  world: AgentWorld,
  node: LabNode,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const configPath = `${world.dir}/${node.name}.json`;
  await Deno.mkdir(`${world.dir}/${node.name}`, { recursive: true });
  await Deno.writeTextFile(configPath, JSON.stringify(labConfig(world, node, extra), null, 2));
  return configPath;
}

let warmed: Promise<void> | undefined;

/** Starts (or restarts) the agent of a node with the unit's ExecStart argv plus `--config`. */
export async function startAgent(
  lab: Lab,
  world: AgentWorld,
  node: LabNode,
  extra: Record<string, unknown> = {},
  options: StartAgentOptions = {},
): Promise<LabAgent> {
  const config = labConfig(world, node, extra);
  const configPath = await writeNodeConfig(world, node, extra);
  const unit = await renderUnit();
  const argv = execStartArgv(unit);
  const env = execEnvironment(unit);
  // `--cached-only` needs the unit's DENO_DIR warm; `skiff install` does this on a node, and
  // an agent started without an install (some tests) must not depend on test order.
  warmed ??= run([argv[0], "cache", `${ROOT}agent/main.ts`], { env }).then(() => {});
  await warmed;
  // The unit's config path is replaced by the node's; everything else is the unit's line.
  const i = argv.indexOf("--config");
  argv[i + 1] = configPath;
  const existing = world.agents.find((a) => a.node === node);
  const logs = existing?.logs ?? [];
  let child: Deno.ChildProcess;
  if (options.logFile) {
    // sh execs the unit's argv with its output appended to the file: same pid, same argv.
    child = lab.spawn(node, ["sh", "-c", 'exec "$@" >>"$0" 2>&1', options.logFile, ...argv], {
      stderr: "null",
      stdout: "null",
      env,
    });
  } else {
    child = lab.spawn(node, argv, { stderr: "piped", stdout: "null", env });
    pump(child.stderr, logs).catch(() => {});
  }
  const agent: LabAgent = existing ?? { node, configPath, config, child, logs };
  agent.child = child;
  agent.logFile = options.logFile;
  if (!existing) world.agents.push(agent);
  return agent;
}

/** GETs a path from the agent's health port inside the node; returns status and body. */
export async function agentGet(
  node: LabNode,
  path: string,
  port = 10256,
): Promise<{ status: number; body: string }> {
  const out = await node.run([
    "curl",
    "-s",
    "-m",
    "2",
    "-o",
    "/dev/stdout",
    "-w",
    "\n%{http_code}",
    `http://127.0.0.1:${port}${path}`,
  ], { allowFailure: true });
  const lines = out.stdout.split("\n");
  const status = Number(lines.pop());
  return { status: Number.isFinite(status) ? status : 0, body: lines.join("\n") };
}

/** Waits until /readyz answers 200 (throws with the agent's last log lines on timeout). */
export async function waitReady(agent: LabAgent, timeoutMs = 30_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const r = await agentGet(agent.node, "/readyz");
    if (r.status === 200) return Date.now() - t0;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(
    `agent on ${agent.node.name} not ready:\n${(await agentLogTail(agent)).join("\n")}`,
  );
}

/** The agent's last log lines (from its piped stderr or its log file). */
export async function agentLogTail(agent: LabAgent, lines = 15): Promise<string[]> {
  if (!agent.logFile) return agent.logs.slice(-lines);
  const text = await Deno.readTextFile(agent.logFile).catch(() => "");
  return text.split("\n").filter(Boolean).slice(-lines);
}
