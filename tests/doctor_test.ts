/** doctor finds the staged failure conditions in a lab node, and fixes checksum offload. */
import assert from "node:assert/strict";
import { type CheckResult, runDoctor } from "../agent/doctor.ts";
import { createLab } from "./lab/lab.ts";

function byId(results: CheckResult[], id: string): CheckResult {
  const r = results.find((x) => x.id === id);
  assert.ok(r, `no check ${id}`);
  return r;
}

Deno.test("doctor reports a healthy node as ok and staged problems as failures", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  const dir = await Deno.makeTempDir({ prefix: "skiff-doctor-" });
  try {
    const ctx = {
      netns: node.nsPath,
      vxlanDevice: "flannel.1",
      uplink: "eth0",
      subnetFile: `${dir}/subnet.env`,
      pinDir: node.pinDir,
      cgroupPath: node.cgroup,
      agentRunning: false,
    };
    // A healthy node: VXLAN at uplink − 50, subnet.env complete, no pins.
    await node.run([
      "ip",
      "link",
      "add",
      "flannel.1",
      "type",
      "vxlan",
      "id",
      "1",
      "dstport",
      "8472",
      "local",
      node.ip,
      "dev",
      "eth0",
      "nolearning",
    ]);
    await node.run(["ip", "link", "set", "flannel.1", "mtu", "1450", "up"]);
    await Deno.writeTextFile(
      ctx.subnetFile,
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    let results = await runDoctor(ctx);
    for (
      const id of [
        "cgroup-v2",
        "bpffs",
        "iptables-mode",
        "vxlan-mtu",
        "uplink-nat-only",
        "subnet-env",
        "leftover-state",
      ]
    ) {
      assert.equal(byId(results, id).status, "ok", `${id}: ${byId(results, id).detail}`);
    }
    assert.match(byId(results, "ip-vs").detail, /no IP_VS|ip_vs is available/);

    // 1. iptables legacy and nft both hold rules.
    await node.run([
      "iptables-legacy",
      "-t",
      "filter",
      "-A",
      "INPUT",
      "-s",
      "192.0.2.1",
      "-j",
      "ACCEPT",
    ]);
    await node.run([
      "iptables-nft",
      "-t",
      "filter",
      "-A",
      "INPUT",
      "-s",
      "192.0.2.2",
      "-j",
      "ACCEPT",
    ]);
    // 2. The uplink MTU shrinks under the VXLAN device.
    await node.run(["ip", "link", "set", "eth0", "mtu", "1400"]);
    // 3. A NAT-only address on the uplink.
    await node.run(["ip", "addr", "add", "10.0.2.15/24", "dev", "eth0"]);
    // 4. subnet.env gone.
    await Deno.remove(ctx.subnetFile);
    // 5. Pins left with no agent.
    await node.run([
      "bpftool",
      "map",
      "create",
      `${node.pinDir}/old_map`,
      "type",
      "hash",
      "key",
      "4",
      "value",
      "4",
      "entries",
      "4",
      "name",
      "old_map",
    ]);
    // 6. checksum offload with --random-fully masquerade.
    await node.run(["ethtool", "-K", "flannel.1", "tx-checksum-ip-generic", "on"], {
      allowFailure: true,
    });
    await node.run([
      "iptables-nft",
      "-t",
      "nat",
      "-A",
      "POSTROUTING",
      "-s",
      "10.244.0.0/16",
      "!",
      "-d",
      "10.244.0.0/16",
      "-j",
      "MASQUERADE",
      "--random-fully",
    ]);

    results = await runDoctor(ctx);
    assert.equal(byId(results, "iptables-mode").status, "fail");
    assert.equal(byId(results, "vxlan-mtu").status, "fail");
    assert.equal(byId(results, "uplink-nat-only").status, "fail");
    assert.equal(byId(results, "subnet-env").status, "fail");
    assert.equal(byId(results, "leftover-state").status, "warn");
    assert.equal(byId(results, "vxlan-csum-offload").status, "warn");
    const fixed = await runDoctor(ctx, { fix: true });
    assert.equal(byId(fixed, "vxlan-csum-offload").fixed, true);
    assert.match(
      (await node.run(["ethtool", "-k", "flannel.1"])).stdout,
      /tx-checksum-ip-generic: off/,
    );
    assert.equal(byId(await runDoctor(ctx), "vxlan-csum-offload").status, "ok");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
