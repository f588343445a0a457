/**
 * `deno task demo` (`npm run demo`): a 3-node skiff cluster on this machine, end to end — lab
 * nodes, `skiff install`, agents started with the systemd unit's own ExecStart line, Pods
 * through the CNI chain, a Service with backends on every node, `skiff status`/`services`,
 * the VIP asked from a Pod on each node — then everything torn down (also on Ctrl-C and on
 * failure). `--keep` leaves the lab running; `demo down` removes a kept lab.
 * @module
 */
import { parseArgs } from "node:util";
import { addPod } from "../../agent/cni/runtime.ts";
import { run } from "../../agent/net/exec.ts";
import { createLab, findLeftovers, type Lab, type LabHost, UNDERLAY } from "../lab/lab.ts";
import {
  agentGet,
  agentLogTail,
  type AgentWorld,
  createAgentWorld,
  LAB_NETWORK,
  startAgent,
  waitReady,
  writeNodeConfig,
} from "../agent/agent_lab.ts";
import {
  DEMO_DIR,
  type DemoNode,
  type DemoState,
  isAgent,
  loadState,
  pidAlive,
  podDriver,
  saveState,
  skiffIn,
  STATE_FILE,
  teardown,
} from "./demo_state.ts";
import { Progress, seconds } from "./progress.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const VIP = "10.96.0.10";
const PORT = 80;
const TARGET_PORT = 8080;
const PODS_PER_NODE = 2;
const ASKS_PER_CLIENT = 10;

const HELP =
  `Usage: deno task demo [--keep]        build a 3-node lab cluster, show it, tear it down
       deno task demo down                remove a lab kept with --keep

  --keep       leave the lab and its agents running (and print how to poke at it)
  -h, --help   this help

Needs root (network namespaces, BPF, cgroups). All traffic stays inside lab namespaces.`;

function podHost(name: string): LabHost {
  const nsPath = `/run/netns/${name}`;
  return { name, ns: name, nsPath, run: (argv, o = {}) => run(argv, { ...o, netns: nsPath }) };
}

/** One TCP request to the VIP from inside a Pod, in its node's cgroup (socket LB applies). */
async function askVip(podNs: string, cgroup: string): Promise<string> {
  const out = await run([
    "sh",
    "-c",
    // -u: read only, so the server's close cannot race unread client data into an RST.
    `echo $$ > ${cgroup}/cgroup.procs && exec timeout 3 socat -T 2 -u TCP:${VIP}:${PORT},connect-timeout=2 -`,
  ], { netns: `/run/netns/${podNs}`, allowFailure: true });
  return out.stdout.trim();
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out after ${seconds(ms)} waiting for ${what}`);
}

async function checkPrerequisites(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("the demo needs root (network namespaces, BPF, cgroups)");
  for (const f of ["build/skiff-loader", "build/bpf"]) {
    if (!(await Deno.lstat(`${ROOT}/${f}`).then(() => true, () => false))) {
      throw new Error(`${f} is missing: run \`deno task build\` (or \`deno task demo\`) first`);
    }
  }
  const old = await loadState();
  if (!old) return;
  const alive = pidAlive(old.keeperPid) || pidAlive(old.pid) ||
    old.nodes.some((n) => isAgent(n.agentPid));
  if (alive) {
    throw new Error(
      `a demo lab is already running (run id ${old.runId}, since ${old.startedAt}); ` +
        "remove it with `deno task demo down`",
    );
  }
  console.log(`A stale demo lab (run id ${old.runId}) is recorded; removing it first.`);
  await teardown(old, new Progress(4), { destroyLab: true });
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

let tornDown = false;
async function tearDownOnce(state: DemoState, progress: Progress): Promise<void> {
  if (tornDown) return;
  tornDown = true;
  await teardown(state, progress, { destroyLab: false });
}

/** The agent's own start-up-to-ready time, from its "ready" log line (JSON logs). */
async function readyMsFromLog(logFile: string): Promise<number | undefined> {
  const text = await Deno.readTextFile(logFile).catch(() => "");
  for (const line of text.split("\n")) {
    try {
      const entry = JSON.parse(line);
      if (entry.msg === "ready" && typeof entry.ms === "number") return entry.ms;
    } catch { /* not JSON */ }
  }
  return undefined;
}

async function up(keep: boolean): Promise<number> {
  await checkPrerequisites();
  const total = keep ? 8 : 12;
  const progress = new Progress(total);
  const t0 = performance.now();
  console.log(
    `skiff demo: a 3-node cluster in network namespaces on this machine${
      keep ? " (kept afterwards)" : ""
    }\n`,
  );

  // Registered before the lab's own handler, so this line comes before the teardown steps.
  const interrupted = () => console.log("\nInterrupted: tearing down");
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  let lab: Lab | undefined;
  let world: AgentWorld | undefined;
  let state: DemoState | undefined;
  try {
    lab = await progress.step(
      "Creating the lab: 3 nodes on an underlay bridge",
      async () => {
        const l = await createLab({ nodes: 3, outside: false });
        world = await createAgentWorld(l);
        state = {
          runId: l.runId,
          prefix: l.prefix,
          worldDir: world.dir,
          servicesFile: world.servicesFile,
          startedAt: new Date().toISOString(),
          pid: Deno.pid,
          kept: false,
          nodes: l.nodes.map((n): DemoNode => ({
            name: n.name,
            nsPath: n.nsPath,
            ip: n.ip,
            cgroup: n.cgroup,
            configPath: `${world!.dir}/${n.name}.json`,
            unitDir: `${world!.dir}/${n.name}/units`,
            logFile: `${world!.dir}/${n.name}/agent.log`,
          })),
          pods: [],
        };
        await saveState(state);
        // Ctrl-C and failures destroy the lab; this runs first, while everything still exists.
        l.onTeardown(() => tearDownOnce(state!, progress));
        return l;
      },
      (l) =>
        `run id ${l.runId}; ${
          l.nodes.map((n) => `${n.name} ${n.ip}`).join(", ")
        } on ${UNDERLAY.prefix}.0/${UNDERLAY.len}`,
    );
    const nodes = lab.nodes;
    const st = state!;
    const w = world!;

    await progress.step("Installing skiff on every node (skiff install --no-start)", async () => {
      for (const [i, node] of nodes.entries()) {
        await writeNodeConfig(w, node);
        const out = await skiffIn(node.nsPath, [
          "install",
          "-c",
          st.nodes[i].configPath,
          "--no-start",
          "--unit-dir",
          st.nodes[i].unitDir,
        ]);
        if (out.code !== 0) throw new Error(`${node.name}: ${out.stderr.trim()}`);
      }
    }, () => "unit, CNI plugin shim, reference plugins and conflist on each node");

    const readyMs = await progress.step(
      "Starting the agents with the unit's ExecStart line, in each node's namespace",
      async () => {
        const agents = [];
        for (const [i, node] of nodes.entries()) {
          const agent = await startAgent(lab!, w, node, {}, { logFile: st.nodes[i].logFile });
          st.nodes[i].agentPid = agent.child.pid;
          agents.push(agent);
        }
        await saveState(st);
        for (const a of agents) await waitReady(a, 30_000);
        return await Promise.all(st.nodes.map((n) => readyMsFromLog(n.logFile)));
      },
      () => "all three answer /readyz with 200",
    );
    for (const [i, n] of st.nodes.entries()) {
      const ms = readyMs[i];
      progress.note(
        `${n.name}: pid ${n.agentPid}, ready ${
          ms === undefined ? "" : `${seconds(ms)} `
        }after start`,
      );
    }
    progress.note(`embedded store: ${w.storeDir}, network ${LAB_NETWORK.Network} (vxlan)`);

    await progress.step(
      `Creating ${
        PODS_PER_NODE * nodes.length
      } Pods through the CNI chain (skiff → bridge, host-local, portmap)`,
      async () => {
        for (const [i, node] of nodes.entries()) {
          for (let k = 0; k < PODS_PER_NODE; k++) {
            const name = `${lab!.prefix}n${i + 1}${"ab"[k]}`;
            st.pods.push({ name, node: node.name });
            await saveState(st);
            const rec = await addPod(name, podDriver(st, st.nodes[i]));
            const ips = (rec.result as { ips: { address: string }[] }).ips;
            st.pods[st.pods.length - 1].ip = ips[0].address.split("/")[0];
            lab!.spawn(podHost(name), [
              "socat",
              `TCP-LISTEN:${TARGET_PORT},reuseaddr,fork`,
              `SYSTEM:echo ${name} on ${node.name}`,
            ], { stdout: "null", stderr: "null" });
          }
        }
        await saveState(st);
      },
    );
    progress.block(table([
      ["POD", "NODE", "IP", "SERVES"],
      ...st.pods.map((p) => [p.name, p.node, p.ip!, `:${TARGET_PORT} "<pod> on <node>"`]),
    ]));

    await progress.step(
      `Adding Service default/web ${VIP}:${PORT} → :${TARGET_PORT} on all ${st.pods.length} Pods (skiff service add)`,
      async () => {
        const svc = {
          namespace: "default",
          name: "web",
          clusterIP: VIP,
          ports: [{ name: "http", port: PORT, targetPort: TARGET_PORT, protocol: "TCP" }],
          endpoints: st.pods.map((p) => ({ ip: p.ip, node: p.node })),
        };
        const out = await skiffIn(nodes[0].nsPath, [
          "service",
          "add",
          "-f",
          "-",
          "--file",
          st.servicesFile,
        ], JSON.stringify(svc));
        if (out.code !== 0) throw new Error(out.stderr.trim());
        // Every agent picks the file up; the VIP answers from a Pod on every node.
        for (const [i, node] of nodes.entries()) {
          const client = st.pods.find((p) => p.node === node.name)!;
          await until(`the VIP to answer on ${node.name}`, async () => {
            const body = (await agentGet(node, "/statusz")).body;
            const synced = body && JSON.parse(body).services?.services === 1;
            if (!synced) return undefined;
            const a = await askVip(client.name, st.nodes[i].cgroup);
            return a.startsWith(lab!.prefix) ? a : undefined;
          }, 20_000);
        }
      },
      () => "programmed by all three agents",
    );

    await progress.step(`skiff status (on ${nodes[0].name})`, async () => {
      const out = await skiffIn(nodes[0].nsPath, ["status", "-c", st.nodes[0].configPath]);
      if (out.code !== 0) throw new Error(`exit ${out.code}: ${out.stderr.trim()}`);
      progress.block(out.stdout);
    }, () => "agent ready");

    const view = async (args: string[]) => {
      const out = await skiffIn(nodes[0].nsPath, [...args, "-c", st.nodes[0].configPath]);
      if (out.code !== 0) {
        throw new Error(`skiff ${args[0]}: exit ${out.code}: ${out.stderr.trim()}`);
      }
      progress.block(`$ skiff ${args.join(" ")}\n${out.stdout}`);
    };
    await progress.step(`skiff services, backends, leases (on ${nodes[0].name})`, async () => {
      await view(["services"]);
      await view(["backends"]);
      await view(["leases"]);
    }, () => "the Service is programmed in the node's maps; three leases in the store");

    const answers = await progress.step(
      `Asking http://${VIP}:${PORT} ${ASKS_PER_CLIENT} times from one Pod on each node`,
      async () => {
        const rows: { client: string; node: string; got: string[] }[] = [];
        for (const [i, node] of nodes.entries()) {
          const client = st.pods.find((p) => p.node === node.name)!;
          const got: string[] = [];
          for (let k = 0; k < ASKS_PER_CLIENT; k++) {
            got.push((await askVip(client.name, st.nodes[i].cgroup)) || "(no answer)");
          }
          rows.push({ client: client.name, node: node.name, got });
        }
        return rows;
      },
      (rows) => {
        const all = rows.flatMap((r) => r.got);
        const ok = all.filter((a) => a !== "(no answer)");
        return `${ok.length}/${all.length} answered`;
      },
    );
    for (const r of answers) {
      const counts = new Map<string, number>();
      for (const a of r.got) counts.set(a, (counts.get(a) ?? 0) + 1);
      progress.note(`from ${r.client} (on ${r.node}):`);
      progress.block(
        [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([a, n]) => `${n} × ${a}`).join(
          "\n",
        ),
      );
    }
    const byNode = new Map(nodes.map((n) => [n.name, 0]));
    for (const a of answers.flatMap((r) => r.got)) {
      const node = / on (\S+)$/.exec(a)?.[1];
      if (node && byNode.has(node)) byNode.set(node, byNode.get(node)! + 1);
    }
    progress.note(
      `Answers by backend node: ${[...byNode].map(([n, c]) => `${n}=${c}`).join(" ")}`,
    );
    const unanswered = answers.flatMap((r) => r.got).filter((a) => a === "(no answer)").length;
    if (unanswered > 0) throw new Error(`${unanswered} requests to the VIP got no answer`);

    if (keep) {
      const keeper = lab.spawn(lab.underlay, ["sleep", "infinity"], {
        stdout: "null",
        stderr: "null",
      });
      st.keeperPid = keeper.pid;
      st.kept = true;
      await saveState(st);
      // The lab's marker names a live owner, so later labs do not reap this one as dead.
      await Deno.writeTextFile(
        `/run/skiff-lab/${lab.runId}.json`,
        JSON.stringify({ pid: keeper.pid, created: st.startedAt }),
      );
      printKept(st);
      console.log(`\nDemo up in ${seconds(performance.now() - t0)}; the lab is kept.`);
      return 0;
    }
    console.log("\nTearing down");
    await tearDownOnce(st, progress);
    const labDone = lab;
    await progress.step("Destroying the lab (namespaces, cgroups, pins)", async () => {
      await labDone.destroy();
      const left = await findLeftovers(labDone.prefix);
      if (Object.values(left).some((l) => l.length)) {
        throw new Error(`left behind: ${JSON.stringify(left)}`);
      }
    }, () => `nothing named ${labDone.prefix}* is left`);
    console.log(`\nDemo done in ${seconds(performance.now() - t0)}.`);
    return 0;
  } catch (error) {
    console.log(`\nThe demo failed: ${(error as Error).message}`);
    for (const a of world?.agents ?? []) {
      // info and above: the debug lines of every resync would hide what happened
      const tail = (await agentLogTail(a, 200)).filter((l) => !l.includes('"level":"debug"'));
      if (tail.length) {
        console.log(`\nlast log lines of ${a.node.name} (${a.logFile}):`);
        console.log(tail.slice(-5).join("\n"));
      }
    }
    console.log("\nTearing down");
    if (lab) await lab.destroy();
    else if (state) await teardown(state, progress, { destroyLab: true });
    return 1;
  }
}

function printKept(st: DemoState): void {
  const n1 = st.nodes[0];
  const pod = st.pods[0];
  const deno = `${ROOT}/node_modules/.bin/deno`;
  console.log(`
The lab is kept (run id ${st.runId}). Poke at it from inside its namespaces:

  nsenter --net=${n1.nsPath} ${deno} run -A ${ROOT}/cli/skiff.ts status -c ${n1.configPath}
      (and services, backends, leases, routes, maps, pods, doctor with the same -c)
  nsenter --net=${n1.nsPath} curl -s http://127.0.0.1:10249/metrics | grep ^skiff_
  nsenter --net=${n1.nsPath} ip -d link show flannel.1
  nsenter --net=/run/netns/${pod.name} sh -c 'echo $$ > ${n1.cgroup}/cgroup.procs; socat -u TCP:${VIP}:${PORT} -'

Nodes (namespace, config, agent log):
${
    st.nodes.map((n) =>
      `  ${n.name}  ${n.nsPath}  ${n.configPath}  ${n.logFile}  pid ${n.agentPid}`
    )
      .join("\n")
  }
Services file: ${st.servicesFile}   (edit with: skiff service add|del --file ${st.servicesFile})
Recorded in:   ${STATE_FILE}

Remove it with:  deno task demo down   (or: ${deno} run -A ${ROOT}/tests/demo/main.ts down)`);
}

async function down(): Promise<number> {
  const st = await loadState();
  if (!st) {
    console.log(`No kept demo lab (${STATE_FILE} does not exist); nothing to do.`);
    await Deno.remove(DEMO_DIR).catch(() => {});
    return 0;
  }
  console.log(`Removing the kept demo lab (run id ${st.runId}, since ${st.startedAt})\n`);
  const t0 = performance.now();
  await teardown(st, new Progress(4), { destroyLab: true });
  const left = await findLeftovers(st.prefix);
  const n = Object.values(left).reduce((s, l) => s + l.length, 0);
  console.log(
    n === 0
      ? `\nDone in ${seconds(performance.now() - t0)}; nothing named ${st.prefix}* is left.`
      : `\nLeft behind: ${JSON.stringify(left)}`,
  );
  return n === 0 ? 0 : 1;
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { keep: { type: "boolean" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    });
  } catch (error) {
    console.error(`demo: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(HELP);
    return 0;
  }
  const [command, ...rest] = parsed.positionals;
  if (rest.length || (command !== undefined && command !== "down" && command !== "up")) {
    console.error(`demo: unknown argument "${rest[0] ?? command}"\n\n${HELP}`);
    return 2;
  }
  try {
    if (command === "down") {
      if (parsed.values.keep) throw new Error("--keep makes no sense with down");
      return await down();
    }
    return await up(Boolean(parsed.values.keep));
  } catch (error) {
    console.error(`demo: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
