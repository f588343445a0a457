/**
 * The read-only node views (`skiff services|backends|leases|routes|maps|pods|doctor`) run as
 * real subprocesses inside a lab node's netns, against state made by the real components: the
 * overlay on 2 nodes over an embedded store, the bpf data plane with synced Services on node
 * 1, a Pod from the CNI pod driver. Each view's table and JSON are checked, then a broken
 * state is staged (route deleted, map filled, subnet.env removed) and must show.
 * @module
 */
import assert from "node:assert/strict";
import { createLab, type Lab, type LabNode } from "../tests/lab/lab.ts";
import { createLogger } from "../agent/log.ts";
import { createEmbeddedStore } from "../agent/overlay/embedded_store.ts";
import { type OverlayHandle, startOverlay } from "../agent/overlay/overlay.ts";
import { BpfDataplane } from "../agent/lb/bpf_dataplane.ts";
import { putServices, readServiceFile } from "../agent/lb/service_file.ts";
import { parseServiceEntry } from "../agent/lb/validate.ts";
import { addPod, delPod, type PodDriverOptions } from "../agent/cni/runtime.ts";
import { run } from "../agent/net/exec.ts";
import { peerTables, waitUntil } from "../tests/overlay/overlay_lab.ts";
import { startTestEtcd } from "../tests/overlay/etcd_server.ts";
import { createEtcdStore } from "../agent/overlay/etcd_store.ts";
import { writeSubnetEnv } from "../agent/overlay/subnet_env.ts";

const SKIFF = new URL("./skiff.ts", import.meta.url).pathname;
const NET = { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } };
const log = createLogger({ level: "error" });

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `skiff args…` inside `node`'s netns (or the current one without a node). */
async function skiff(node: LabNode | undefined, args: string[]): Promise<Result> {
  const argv = [Deno.execPath(), "run", "-A", SKIFF, ...args];
  const out = node
    ? await node.run(argv, { allowFailure: true, env: { NO_COLOR: "1" } })
    : await run(argv, { allowFailure: true, env: { NO_COLOR: "1" } });
  return out;
}

/** Runs a view that must succeed; returns stdout. */
async function ok(node: LabNode | undefined, args: string[]): Promise<string> {
  const r = await skiff(node, args);
  assert.equal(r.code, 0, `skiff ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  // SKIFF_TEST_SHOW=1 prints every view, to see what an operator sees
  if (Deno.env.get("SKIFF_TEST_SHOW")) console.log(`$ skiff ${args.join(" ")}\n${r.stdout}`);
  return r.stdout;
}

/** A table's rows as arrays of cells (split on runs of 2+ spaces), header first. */
function table(text: string): string[][] {
  return text.trimEnd().split("\n").map((l) => l.trim().split(/\s{2,}/));
}

/** The rows of a table whose cell `column` (by header name) equals `value`. */
function rowsWhere(rows: string[][], column: string, value: string): string[][] {
  const c = rows[0].indexOf(column);
  assert.ok(c >= 0, `no column ${column} in ${rows[0].join(" ")}`);
  return rows.slice(1).filter((r) => r[c] === value);
}

function cellOf(rows: string[][], row: string[], column: string): string {
  return row[rows[0].indexOf(column)];
}

interface NodeFiles {
  config: string;
  stateDir: string;
  subnetFile: string;
}

async function writeNodeConfig(
  tmp: string,
  node: LabNode,
  servicesFile: string,
): Promise<NodeFiles> {
  const dir = `${tmp}/${node.name}`;
  await Deno.mkdir(dir, { recursive: true });
  const files = {
    config: `${dir}/config.json`,
    stateDir: `${dir}/state`,
    subnetFile: `${dir}/subnet.env`,
  };
  await Deno.writeTextFile(
    files.config,
    JSON.stringify({
      nodeName: node.name,
      stateDir: files.stateDir,
      pinDir: node.pinDir,
      cgroupPath: node.cgroup,
      uplink: { iface: node.uplink },
      store: { type: "embedded", dir: `${tmp}/store` },
      dataplane: "bpf",
      servicesFile,
      cni: { subnetFile: files.subnetFile },
      healthAddress: "",
    }),
  );
  return files;
}

function service(
  name: string,
  clusterIP: string,
  ports: unknown[],
  endpoints: unknown[],
) {
  return parseServiceEntry({ namespace: "default", name, clusterIP, ports, endpoints });
}

Deno.test({
  name: "skiff views show the live state of a lab node, in tables and JSON",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using lab: Lab = await createLab({ nodes: 2, outside: false });
    const [n1, n2] = lab.nodes;
    const tmp = await Deno.makeTempDir({ prefix: `sk${lab.runId}-views-` });
    const servicesFile = `${tmp}/services.json`;
    const overlays: OverlayHandle[] = [];
    let dataplane: BpfDataplane | undefined;
    let driver: PodDriverOptions | undefined;
    try {
      const f1 = await writeNodeConfig(tmp, n1, servicesFile);
      const f2 = await writeNodeConfig(tmp, n2, servicesFile);
      const store = await createEmbeddedStore({ dir: `${tmp}/store` });
      await store.initNetworkConfig(NET);
      for (const [node, files] of [[n1, f1], [n2, f2]] as const) {
        overlays.push(
          await startOverlay({
            store: await createEmbeddedStore({ dir: `${tmp}/store` }),
            netns: node.nsPath,
            nodeName: node.name,
            uplink: { iface: node.uplink },
            stateDir: files.stateDir,
            subnetEnvPath: files.subnetFile,
            resyncMs: 600_000,
            log,
          }),
        );
      }
      await Promise.all(overlays.map((o) => o.converged));
      const [s1, s2] = overlays.map((o) => o.subnet);
      // node 1 learns node 2's lease from the store's watch: wait for both routes
      for (const [node, peer] of [[n1, s2], [n2, s1]] as const) {
        await waitUntil(
          `${node.name} route to ${peer}`,
          async () => (await peerTables(node)).routes.includes(peer),
        );
      }
      // stop the loops: the kernel keeps its state, and staged breakage stays broken
      for (const o of overlays) await o.close();

      dataplane = await BpfDataplane.install({
        pinDir: n1.pinDir,
        devices: [n1.uplink],
        netns: n1.nsPath,
        nodeName: n1.name,
        nodeIPs: [n1.ip],
      });
      const pod1 = s1.replace(/0\/24$/, "10");
      const pod2 = s2.replace(/0\/24$/, "10");
      await putServices(servicesFile, [
        service("web", "10.96.0.10", [
          { port: 80, targetPort: 8080, protocol: "TCP", nodePort: 30080 },
        ], [
          { ip: pod1, node: n1.name },
          { ip: pod2, node: n2.name },
          { ip: pod2.replace(/10$/, "11"), node: n2.name, terminating: true },
        ]),
        service("dns", "10.96.0.53", [{ name: "dns", port: 53, protocol: "UDP" }], [
          { ip: pod2, node: n2.name },
        ]),
      ]);
      await dataplane.sync(await readServiceFile(servicesFile));
      // a Service the agent has not synced yet
      await putServices(servicesFile, [
        service("late", "10.96.0.99", [{ port: 443, protocol: "TCP" }], [{
          ip: pod1,
          node: n1.name,
        }]),
      ]);
      // one SYN from node 2 to node 1's NodePort goes through tc LB and is counted
      await n2.run(
        ["socat", "-T", "1", "-", `TCP:${n1.ip}:30080,connect-timeout=1`],
        { allowFailure: true, stdin: "" },
      );

      driver = {
        confFile: `${tmp}/pods.conflist`,
        binDirs: ["/usr/lib/cni"],
        stateDir: `${f1.stateDir}/pods`,
        hostNetns: n1.nsPath,
      };
      await Deno.writeTextFile(
        driver.confFile,
        JSON.stringify({
          cniVersion: "1.0.0",
          name: "views",
          plugins: [{
            type: "bridge",
            bridge: "cni0",
            isGateway: true,
            ipam: { type: "host-local", dataDir: `${tmp}/ipam`, subnet: s1 },
          }],
        }),
      );
      const pod = await addPod(`sk${lab.runId}p1`, driver, {
        portMappings: [{ hostPort: 8081, containerPort: 80, protocol: "tcp" }],
      });
      const podIp = pod.result!.ips![0].address;
      const cfg1 = ["--config", f1.config];

      await t.step("services: frontends joined with the maps, counters", async () => {
        const rows = table(await ok(n1, ["services", ...cfg1]));
        assert.deepEqual(rows[0], [
          "NAMESPACE",
          "NAME",
          "TYPE",
          "FRONTEND",
          "STATUS",
          "BACKENDS",
          "FLAGS",
          "PACKETS",
          "BYTES",
        ]);
        const web = rowsWhere(rows, "NAME", "web");
        assert.equal(web.length, 2, "ClusterIP and NodePort");
        const cluster = web.find((r) => cellOf(rows, r, "TYPE") === "ClusterIP")!;
        assert.equal(cellOf(rows, cluster, "FRONTEND"), "10.96.0.10:80/TCP");
        assert.equal(cellOf(rows, cluster, "STATUS"), "programmed");
        assert.equal(cellOf(rows, cluster, "BACKENDS"), "2/2", "the terminating one takes none");
        const nodePort = web.find((r) => cellOf(rows, r, "TYPE") === "NodePort")!;
        assert.equal(cellOf(rows, nodePort, "FRONTEND"), `${n1.ip}:30080/TCP`);
        assert.ok(Number(cellOf(rows, nodePort, "PACKETS")) >= 1, "the SYN was counted");
        const late = rowsWhere(rows, "NAME", "late");
        assert.equal(cellOf(rows, late[0], "STATUS"), "not programmed");
        assert.equal(cellOf(rows, late[0], "BACKENDS"), "-/1");

        const json = JSON.parse(await ok(n1, ["services", "-o", "json", ...cfg1]));
        assert.equal(json.pinDir, n1.pinDir);
        assert.equal(json.snatAddr, n1.ip);
        const dns = json.services.find((s: { name: string }) => s.name === "dns");
        assert.deepEqual(
          dns.frontends.map((f: Record<string, unknown>) => [f.vip, f.port, f.protocol, f.status]),
          [["10.96.0.53", 53, "UDP", "programmed"]],
        );
        const webNp = json.services.find((s: { name: string }) => s.name === "web").frontends
          .find((f: { kind: string }) => f.kind === "NodePort");
        assert.ok(webNp.packets >= 1 && webNp.bytes >= 40, JSON.stringify(webNp));
        const webJson = json.services.find((s: { name: string }) => s.name === "web");
        assert.equal(webJson.packets, webNp.packets, "the ClusterIP saw no packet");
        assert.equal(json.services.find((s: { name: string }) => s.name === "late").packets, null);
        assert.deepEqual(json.stale, []);

        // another data plane keeps no maps: the file's frontends, status not checked
        const other = await skiff(n2, [
          "services",
          "--config",
          f2.config,
          "--dataplane",
          "iptables",
        ]);
        assert.equal(other.code, 0, other.stderr);
        assert.match(other.stderr, /"iptables" keeps no BPF maps/);
        const otherRows = table(other.stdout);
        assert.equal(
          otherRows.length - 1,
          4,
          "web: ClusterIP + NodePort on the uplink address; dns; late",
        );
        assert.equal(rowsWhere(otherRows, "FRONTEND", `${n2.ip}:30080/TCP`).length, 1);
        assert.deepEqual(
          new Set(otherRows.slice(1).map((r) => cellOf(otherRows, r, "STATUS"))),
          new Set(["unknown"]),
        );
      });

      await t.step("backends: ids, flags, node, filtered by Service", async () => {
        const rows = table(await ok(n1, ["backends", ...cfg1]));
        assert.deepEqual(rows[0], ["ID", "BACKEND", "PROTO", "FLAGS", "NODE", "SERVICES"]);
        assert.equal(rows.length - 1, 4, "web×3 + dns");
        const local = rowsWhere(rows, "BACKEND", `${pod1}:8080`)[0];
        assert.equal(cellOf(rows, local, "FLAGS"), "local");
        assert.equal(cellOf(rows, local, "NODE"), n1.name);
        const term = rowsWhere(rows, "BACKEND", `${pod2.replace(/10$/, "11")}:8080`)[0];
        assert.equal(cellOf(rows, term, "FLAGS"), "terminating");
        const dns = rowsWhere(rows, "PROTO", "UDP");
        assert.equal(cellOf(rows, dns[0], "SERVICES"), "default/dns");

        const json = JSON.parse(await ok(n1, ["backends", "default/dns", "-o", "json", ...cfg1]));
        assert.deepEqual(
          json.backends.map((b: Record<string, unknown>) => [b.ip, b.port, b.protocol, b.node]),
          [[pod2, 53, "UDP", n2.name]],
        );
        const missing = await skiff(n1, ["backends", "--service", "default/nope", ...cfg1]);
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /default\/nope is not in/);
      });

      await t.step("leases: both nodes, this node's marked", async () => {
        const rows = table(await ok(n1, ["leases", ...cfg1]));
        assert.deepEqual(rows[0], ["SUBNET", "PUBLIC-IP", "VTEP-MAC", "VNI", "EXPIRES"]);
        const lines = (await ok(n2, ["leases", "--config", f2.config])).trimEnd().split("\n");
        const mine = lines.filter((l) => l.startsWith("*"));
        assert.equal(mine.length, 1);
        assert.match(mine[0], new RegExp(`${s2.replace(/\./g, "\\.")}\\s+${n2.ip}\\s`));
        const json = JSON.parse(await ok(n1, ["leases", "-o", "json", ...cfg1]));
        assert.deepEqual(
          json.leases.map((l: Record<string, unknown>) => [l.subnet, l.publicIp, l.thisNode]),
          [[s1, n1.ip, true], [s2, n2.ip, false]].sort((a, b) =>
            String(a[0]).localeCompare(String(b[0]), "en", { numeric: true })
          ),
        );
        assert.equal(
          json.leases[0].vtepMac,
          overlays[json.leases[0].subnet === s1 ? 0 : 1].lease.attrs.vtepMac,
        );
        assert.ok(Date.parse(json.leases[0].expiresAt) > Date.now());
      });

      await t.step("routes: per peer ok, then a deleted route is missing", async () => {
        const rows = table(await ok(n1, ["routes", ...cfg1]));
        assert.deepEqual(rows[0], ["SUBNET", "NODE-IP", "VTEP-MAC", "ROUTE", "NEIGH", "FDB"]);
        assert.deepEqual(rows.slice(1).map((r) => [r[0], r[1], r[3], r[4], r[5]]), [
          [s2, n2.ip, "ok", "ok", "ok"],
        ]);
        await n1.run(["ip", "route", "del", s2]);
        // --netns from the root namespace reads the same node
        const json = JSON.parse(
          await ok(undefined, ["routes", "-o", "json", "--netns", n1.nsPath, ...cfg1]),
        );
        assert.equal(json.converged, false);
        assert.equal(json.device, "flannel.1");
        assert.deepEqual(
          json.peers.map((p: Record<string, { status: string }>) => [
            p.route.status,
            p.neigh.status,
            p.fdb.status,
          ]),
          [["missing", "ok", "ok"]],
        );
      });

      await t.step("maps: every pinned map, pressure with a warning mark", async () => {
        // a 4-entry map filled to 100% beside the LB maps
        const pin = `${n1.pinDir}/views_full`;
        await run([
          "bpftool",
          "map",
          "create",
          pin,
          "type",
          "hash",
          "key",
          "4",
          "value",
          "4",
          "entries",
          "4",
          "name",
          "views_full",
        ]); // deno-fmt-ignore
        for (let i = 0; i < 4; i++) {
          await run(["bpftool", "map", "update", "pinned", pin, "key", String(i), "0", "0", "0",
            "value", "1", "0", "0", "0"]); // deno-fmt-ignore
        }
        const rows = table(await ok(n1, ["maps", ...cfg1]));
        assert.deepEqual(rows[0], ["NAME", "TYPE", "KEY", "VALUE", "MAX", "ENTRIES", "PRESSURE"]);
        const names = rows.slice(1).map((r) => r[0]);
        for (const m of ["lb_services", "lb_backends", "lb_stats", "lb_ct", "views_full"]) {
          assert.ok(names.includes(m), `${m} in ${names.join(",")}`);
        }
        assert.deepEqual(rowsWhere(rows, "NAME", "views_full")[0], [
          "views_full",
          "hash",
          "4",
          "4",
          "4",
          "4",
          "100.0% !",
        ]);
        const json = JSON.parse(await ok(n1, ["maps", "-o", "json", ...cfg1]));
        const backends = json.maps.find((m: { name: string }) => m.name === "lb_backends");
        assert.equal(backends.entries, 4);
        assert.equal(backends.keySize, 4);
        assert.equal(backends.warning, false);
        const stats = json.maps.find((m: { name: string }) => m.name === "lb_stats");
        assert.equal(stats.type, "percpu_array");
        assert.equal(stats.pressure, null);
        assert.equal(
          json.maps.find((m: { name: string }) => m.name === "views_full").warning,
          true,
        );
        assert.ok(!names.some((n) => n.startsWith("progs/") || n.startsWith("links/")));
      });

      await t.step("pods: the driver's Pod with IP and ports (= pod list)", async () => {
        const rows = table(await ok(n1, ["pods", ...cfg1]));
        assert.deepEqual(rows[0], ["NAME", "STATUS", "IP", "PORTS", "NETNS"]);
        assert.deepEqual(rows.slice(1), [[
          `sk${lab.runId}p1`,
          "ok",
          podIp,
          "8081:80/tcp",
          `/run/netns/sk${lab.runId}p1`,
        ]]);
        const json = JSON.parse(await ok(n1, ["pods", "-o", "json", ...cfg1]));
        assert.deepEqual(json.pods.map((p: { name: string; ips: string[] }) => [p.name, p.ips]), [
          [`sk${lab.runId}p1`, [podIp]],
        ]);
        const viaPod = JSON.parse(
          await ok(n1, ["pod", "list", "--state-dir", driver!.stateDir, "-o", "json"]),
        );
        assert.deepEqual(viaPod.pods, json.pods);
      });

      await t.step("doctor: exit 0 on node 1, 1 once subnet.env is gone", async () => {
        const good = await skiff(n1, ["doctor", "-o", "json", ...cfg1]);
        const report = JSON.parse(good.stdout);
        const status = Object.fromEntries(
          report.checks.map((c: { id: string; status: string }) => [c.id, c.status]),
        );
        assert.equal(
          good.code,
          0,
          JSON.stringify(report.checks.filter((c: { status: string }) => c.status === "fail")),
        );
        assert.equal(status["subnet-env"], "ok");
        assert.equal(status["vxlan-mtu"], "ok");
        assert.equal(status["leftover-state"], "warn", "pins, but no agent answers");
        assert.equal(report.context.vxlanDevice, "flannel.1");
        assert.equal(report.context.uplink, "eth0");
        // checksum offload on flannel.1 with a --random-fully masquerade: warn, --fix applies
        await n1.run(["ethtool", "-K", "flannel.1", "tx-checksum-ip-generic", "on"]);
        await n1.run([
          "iptables",
          "-t",
          "nat",
          "-A",
          "POSTROUTING",
          "-s",
          s1,
          "-j",
          "MASQUERADE",
          "--random-fully",
        ]); // deno-fmt-ignore
        const warned = table(await ok(n1, ["doctor", ...cfg1]));
        const csum = rowsWhere(warned, "CHECK", "vxlan-csum-offload")[0];
        assert.equal(cellOf(warned, csum, "STATUS"), "warn");
        assert.equal(
          cellOf(warned, csum, "FIX"),
          "ethtool -K flannel.1 tx-checksum-ip-generic off",
        );
        const fixed = table(await ok(n1, ["doctor", "--fix", ...cfg1]));
        const applied = rowsWhere(fixed, "CHECK", "vxlan-csum-offload")[0];
        assert.equal(cellOf(fixed, applied, "STATUS"), "ok");
        assert.match(cellOf(fixed, applied, "FIX"), /^applied: ethtool -K flannel\.1/);
        assert.match(
          (await n1.run(["ethtool", "-k", "flannel.1"])).stdout,
          /tx-checksum-ip-generic: off/,
        );

        await Deno.remove(f2.subnetFile);
        const bad = await skiff(n2, ["doctor", "--config", f2.config]);
        assert.equal(bad.code, 1);
        const rows = table(bad.stdout);
        assert.deepEqual(rows[0], ["CHECK", "STATUS", "DETAIL", "FIX"]);
        assert.equal(cellOf(rows, rowsWhere(rows, "CHECK", "subnet-env")[0], "STATUS"), "fail");
      });

      await t.step("bad usage exits 2 with a usage line; missing state exits 1", async () => {
        for (
          const args of [
            ["maps", "--bogus"],
            ["services", "-o", "yaml"],
            ["leases", "extra"],
            ["routes", "--config"],
            ["backends", "a/b", "c/d"],
            ["maps", "--pin-dir", "relative/dir"],
            ["doctor", "--config", `${tmp}/nope.json`],
          ]
        ) {
          const r = await skiff(n1, args);
          assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
          assert.match(r.stderr, /^skiff: /);
        }
        const usage = await skiff(n1, ["maps", "--bogus"]);
        assert.match(usage.stderr, /Usage: skiff maps/);
        const gone = await skiff(n1, ["maps", ...cfg1, "--pin-dir", `${n1.pinDir}-missing`]);
        assert.equal(gone.code, 1);
        assert.match(gone.stderr, /pin dir .*-missing does not exist/);
        const notBpf = await skiff(n1, ["backends", ...cfg1, "--dataplane", "iptables"]);
        assert.equal(notBpf.code, 1);
        assert.match(notBpf.stderr, /data plane is "iptables"/);
        const noMaps = await skiff(n2, ["services", "--config", f2.config]);
        assert.equal(noMaps.code, 1);
        assert.match(noMaps.stderr, /does not exist|no LB maps/);
        for (const cmd of ["services", "backends", "leases", "routes", "maps", "pods", "doctor"]) {
          const help = await skiff(undefined, [cmd, "--help"]);
          assert.equal(help.code, 0);
          assert.match(help.stdout, new RegExp(`^Usage: skiff ${cmd}`));
        }
      });
    } finally {
      if (driver) await delPod(`sk${lab.runId}p1`, driver).catch(() => {});
      if (dataplane) await dataplane.uninstall().catch(() => {});
      for (const o of overlays) await o.close().catch(() => {});
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test("skiff leases reads an etcd store; subnet.env marks this node's lease", async () => {
  await using etcd = await startTestEtcd();
  const tmp = await Deno.makeTempDir({ prefix: "skiff-views-etcd-" });
  try {
    const prefix = "/skiff-views/network";
    const store = createEtcdStore({ endpoints: [etcd.endpoint], prefix });
    await store.initNetworkConfig(NET);
    const attrs = (ip: string, mac: string) =>
      ({ publicIp: ip, backendType: "vxlan", vni: 1, vtepMac: mac }) as const;
    // documentation addresses: no interface here has them, so only subnet.env can mark one
    const a = await store.acquireLease(attrs("198.51.100.1", "02:00:00:00:01:01"));
    const b = await store.acquireLease(attrs("198.51.100.2", "02:00:00:00:01:02"));
    await store.close();
    const config = `${tmp}/config.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        store: { type: "etcd", endpoints: [etcd.endpoint], prefix },
        cni: { subnetFile: `${tmp}/subnet.env` },
      }),
    );
    await writeSubnetEnv(`${tmp}/subnet.env`, {
      network: "10.244.0.0/16",
      subnet: b.subnet,
      mtu: 1450,
      ipMasq: true,
    });
    const json = JSON.parse(await ok(undefined, ["leases", "-o", "json", "--config", config]));
    assert.equal(json.store, `etcd ${etcd.endpoint} ${prefix}`);
    const got = Object.fromEntries(
      json.leases.map((l: { subnet: string; publicIp: string; thisNode: boolean }) => [
        l.subnet,
        [l.publicIp, l.thisNode],
      ]),
    );
    assert.deepEqual(got, {
      [a.subnet]: ["198.51.100.1", false],
      [b.subnet]: ["198.51.100.2", true],
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
