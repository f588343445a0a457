/**
 * The node agent as a product, on three lab nodes: installed with `skiff install`, started
 * with the systemd unit's ExecStart line, ready only after convergence, observable (status,
 * metrics), Pods through the CNI chain reaching each other and a Service VIP, SIGTERM keeping
 * all of it working, and `skiff uninstall` leaving nothing behind.
 */
import assert from "node:assert/strict";
import { parseExposition } from "../../agent/metrics.ts";
import { addPod, type PodDriverOptions } from "../../agent/cni/runtime.ts";
import { createEmbeddedStore } from "../../agent/overlay/embedded_store.ts";
import { createLab, type LabHost, type LabNode } from "../lab/lab.ts";
import {
  agentGet,
  createAgentWorld,
  removeAgentWorld,
  skiff,
  startAgent,
  waitReady,
  writeNodeConfig,
} from "./agent_lab.ts";
import { run } from "../../agent/net/exec.ts";

const VIP = "10.96.0.10";

function podHost(name: string): LabHost {
  const nsPath = `/run/netns/${name}`;
  return { name, ns: name, nsPath, run: (argv, o = {}) => run(argv, { ...o, netns: nsPath }) };
}

/** Runs a one-shot TCP client in a Pod, inside the node's cgroup (socket LB applies). */
async function askVip(pod: LabHost, node: LabNode, port = 80): Promise<string> {
  const out = await pod.run([
    "sh",
    "-c",
    // -u: read only. A client that sent data would race the server's close (a close with
    // unread data sends RST, and the RST can discard the answer before it is read).
    `echo $$ > ${node.cgroup}/cgroup.procs && exec timeout 3 socat -T 2 -u TCP:${VIP}:${port},connect-timeout=2 -`,
  ], { allowFailure: true });
  return out.stdout.trim();
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test({
  name:
    "agents converge, serve status and metrics, keep Pods and VIPs working after SIGTERM, uninstall leaves nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using lab = await createLab({ nodes: 3 });
    const world = await createAgentWorld(lab);
    try {
      const drivers: PodDriverOptions[] = [];
      const configs: string[] = [];
      for (const node of lab.nodes) {
        const cfg = await writeNodeConfig(world, node);
        configs.push(cfg);
        const install = await skiff(node, [
          "install",
          "-c",
          cfg,
          "--no-start",
          "--unit-dir",
          `${world.dir}/${node.name}/units`,
        ]);
        assert.equal(install.code, 0, install.stderr);
        assert.match(install.stdout, /cni plugin\s+installed .*\/bin\/skiff/);
        drivers.push({
          confFile: `${world.dir}/${node.name}/net.d/10-skiff.conflist`,
          binDirs: [`${world.dir}/${node.name}/bin`],
          stateDir: `${world.dir}/${node.name}/pods`,
          hostNetns: node.nsPath,
        });
      }
      const agents = [];
      for (const node of lab.nodes) agents.push(await startAgent(lab, world, node));
      for (const a of agents) await waitReady(a);

      // status: table and JSON from inside the node.
      const statusJson = await skiff(lab.nodes[0], ["status", "-c", configs[0], "-o", "json"]);
      assert.equal(statusJson.code, 0, statusJson.stderr);
      const status = JSON.parse(statusJson.stdout);
      assert.equal(status.ready, true);
      assert.equal(status.node, lab.nodes[0].name);
      assert.match(status.overlay.subnet, /^10\.244\.\d+\.0\/24$/);
      assert.equal(status.dataplane.kind, "bpf");
      const table = await skiff(lab.nodes[0], ["status", "-c", configs[0]]);
      assert.match(
        table.stdout,
        new RegExp(`Subnet:\\s+${status.overlay.subnet.replace(/\./g, "\\.")}`),
      );
      assert.match(table.stdout, /Data plane:\s+bpf \(auto: /);

      // metrics, parsed.
      const metrics = parseExposition((await agentGet(lab.nodes[0], "/metrics", 10249)).body);
      assert.equal(metrics.get("skiff_leases"), 3);
      assert.ok((metrics.get('skiff_sync_duration_seconds_count{component="overlay"}') ?? 0) >= 1);
      assert.equal(metrics.get('skiff_dataplane_info{kind="bpf"}'), 1);

      // Pods through the CNI chain, one per node, each serving its name on :8080.
      const pods: { host: LabHost; ip: string; node: LabNode }[] = [];
      for (const [i, node] of lab.nodes.entries()) {
        const name = `${lab.prefix}p${i}`;
        const rec = await addPod(name, drivers[i]);
        const ip = (rec.result as { ips: { address: string }[] }).ips[0].address.split("/")[0];
        const host = podHost(name);
        lab.hosts.push(host);
        lab.spawn(host, ["socat", "TCP-LISTEN:8080,reuseaddr,fork", `SYSTEM:echo ${name}`]);
        pods.push({ host, ip, node });
      }
      for (const p of pods.slice(1)) {
        await pods[0].host.run(["ping", "-c", "1", "-W", "2", p.ip]);
      }

      // A Service over the three Pods, through the CLI; the agents pick it up from the file.
      const svc = {
        namespace: "default",
        name: "web",
        clusterIP: VIP,
        ports: [{ port: 80, targetPort: 8080, protocol: "TCP" }],
        endpoints: pods.map((p) => ({ ip: p.ip, node: p.node.name })),
      };
      const added = await skiff(lab.nodes[0], [
        "service",
        "add",
        "-f",
        "-",
        "--file",
        world.servicesFile,
      ], JSON.stringify(svc));
      assert.equal(added.code, 0, added.stderr);
      const answer = await until("the VIP to answer", async () => {
        const a = await askVip(pods[0].host, lab.nodes[0]);
        return a.startsWith(lab.prefix) ? a : undefined;
      });
      assert.ok(pods.some((p) => p.host.name === answer));
      for (let i = 0; i < 5; i++) await askVip(pods[0].host, lab.nodes[0]);

      // Kernel-side metrics: map sizes, backends, per-frontend BPF counters, CNI operations.
      const after = parseExposition((await agentGet(lab.nodes[0], "/metrics", 10249)).body);
      assert.equal(after.get("skiff_backends"), 3);
      assert.ok((after.get('skiff_bpf_map_capacity{map="lb_backends"}') ?? 0) >= 262144);
      assert.ok((after.get(`skiff_service_new_flows_total{frontend="${VIP}:80/TCP"}`) ?? 0) >= 5);
      assert.ok((after.get('skiff_cni_operations_total{command="ADD",result="ok"}') ?? 0) >= 1);

      // SIGTERM: agents exit 0; Pods and the VIP keep working.
      for (const a of agents) a.child.kill("SIGTERM");
      for (const a of agents) {
        assert.equal((await a.child.status).code, 0, a.logs.slice(-5).join("\n"));
      }
      assert.ok(agents[0].logs.some((l) => l.includes("the data plane stays in place")));
      for (const p of pods.slice(1)) await pods[0].host.run(["ping", "-c", "1", "-W", "2", p.ip]);
      for (let i = 0; i < 5; i++) {
        assert.match(await askVip(pods[0].host, lab.nodes[0]), new RegExp(`^${lab.prefix}p\\d$`));
      }

      // uninstall: nothing of skiff is left on any node.
      for (const [i, node] of lab.nodes.entries()) {
        const out = await skiff(node, [
          "uninstall",
          "-c",
          configs[i],
          "--unit-dir",
          `${world.dir}/${node.name}/units`,
        ]);
        assert.equal(out.code, 0, out.stdout + out.stderr);
        const pins = await Array.fromAsync(Deno.readDir(node.pinDir)).catch(() => []);
        assert.deepEqual(pins, [], "pins left");
        for (const mode of ["legacy", "nft"]) {
          const save = await node.run([`iptables-${mode}-save`]);
          assert.doesNotMatch(save.stdout, /SKIFF/, `${mode} chains left`);
        }
        const links = await node.run(["ip", "-o", "link", "show"]);
        assert.doesNotMatch(links.stdout, /flannel\.1|cni0/);
        for (
          const f of [
            "subnet.env",
            "net.d/10-skiff.conflist",
            "bin/skiff",
            "state",
            "cni-delegates",
            "units/skiff.service",
          ]
        ) {
          await assert.rejects(
            Deno.lstat(`${world.dir}/${node.name}/${f}`),
            Deno.errors.NotFound,
            f,
          );
        }
        const cg = await node.run(["bpftool", "cgroup", "show", node.cgroup]);
        assert.doesNotMatch(cg.stdout, /sock_|connect4|sendmsg4/);
      }
      const store = await createEmbeddedStore({ dir: world.storeDir });
      try {
        assert.deepEqual((await store.listLeases()).leases, [], "leases left in the store");
      } finally {
        await store.close();
      }
    } finally {
      await removeAgentWorld(world);
    }
  },
});

Deno.test({
  name: "an agent whose store is unreachable is healthy but not ready, and stops cleanly",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using lab = await createLab({ nodes: 1, outside: false });
    const world = await createAgentWorld(lab);
    try {
      const node = lab.nodes[0];
      const agent = await startAgent(lab, world, node, {
        store: { type: "etcd", endpoints: ["http://127.0.0.1:9"] },
      });
      const ready = await until("the agent to answer", async () => {
        const r = await agentGet(node, "/readyz");
        return r.status ? r : undefined;
      });
      assert.equal(ready.status, 503);
      assert.ok(JSON.parse(ready.body).pending.includes("overlay"));
      assert.equal((await agentGet(node, "/healthz")).status, 200);
      const status = await skiff(node, ["status", "-c", `${world.dir}/${node.name}.json`]);
      assert.equal(status.code, 3, status.stdout + status.stderr);
      assert.match(status.stdout, /not ready \(waiting for .*overlay/);
      agent.child.kill("SIGTERM");
      assert.equal((await agent.child.status).code, 0);
    } finally {
      await removeAgentWorld(world);
    }
  },
});
