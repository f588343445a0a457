/**
 * skiff side by side with the reference chain (bridge + host-local called directly with the
 * equivalent config) on one node and one subnet.env, for spec 0.3.1, 0.4.0, 1.0.0 and 1.1.0:
 * the same result shape, interface, addresses and routes, CHECK passes, DEL leaves nothing.
 */

import assert from "node:assert/strict";
import { run } from "../../agent/net/exec.ts";
import { createCniNode } from "./cni_node.ts";

type Json = Record<string, unknown>;

/** The result with per-Pod values (MACs, veth names, sandbox, address) replaced by markers. */
function normalize(result: Json): Json {
  const copy = structuredClone(result) as {
    interfaces?: Json[];
    ips?: Json[];
    cniVersion?: string;
  };
  delete copy.cniVersion;
  for (const i of copy.interfaces ?? []) {
    if (typeof i.mac === "string") {
      i.mac = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(i.mac) ? "MAC" : i.mac;
    }
    if (typeof i.name === "string" && i.name.startsWith("veth")) i.name = "VETH";
    if (i.sandbox) i.sandbox = "SANDBOX";
  }
  for (const ip of copy.ips ?? []) ip.address = "ADDR";
  return copy as Json;
}

/** The Pod side as the kernel shows it, with the Pod's own address replaced. */
async function podView(netns: string, address: string): Promise<Json> {
  const ip = address.split("/")[0];
  const link = JSON.parse(
    (await run(["ip", "-j", "-4", "addr", "show", "dev", "eth0"], { netns })).stdout,
  )[0];
  const routes = JSON.parse((await run(["ip", "-j", "-4", "route"], { netns })).stdout);
  return {
    mtu: link.mtu,
    up: link.flags.includes("UP"),
    addrs: link.addr_info.map((a: Json) => `${a.local === ip ? "SELF" : a.local}/${a.prefixlen}`),
    routes: JSON.stringify(routes).replaceAll(`"${ip}"`, '"SELF"'),
  };
}

/** The host side: the veth's bridge, hairpin and MTU. */
async function hostView(nodeNs: string, veth: string): Promise<Json> {
  const link = JSON.parse(
    (await run(["ip", "-j", "-d", "link", "show", "dev", veth], { netns: nodeNs })).stdout,
  )[0];
  return {
    master: link.master,
    mtu: link.mtu,
    hairpin: link.linkinfo?.info_slave_data?.hairpin,
  };
}

Deno.test("skiff gives the same Pod network as bridge + host-local for 0.3.1, 0.4.0, 1.0.0, 1.1.0", async () => {
  await using node = await createCniNode({ ipMasq: true });
  const before = await node.snapshot();
  const subnet = "10.244.1.0/24";
  for (const version of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    // plugins 1.1.1 speak up to 1.0.0: skiff sends its delegate 1.0.0 for a 1.1.0 config
    const refVersion = version === "1.1.0" ? "1.0.0" : version;
    const tag = version.replaceAll(".", "");
    const skiffNs = await node.addNetns(`s${tag}`);
    const refNs = await node.addNetns(`r${tag}`);
    const skiffConf = {
      cniVersion: version,
      name: "skiff",
      type: "skiff",
      subnetFile: node.subnetFile,
      dataDir: node.dataDir,
      ipamDataDir: node.ipamDataDir,
      delegate: { hairpinMode: true },
    };
    const refConf = {
      cniVersion: refVersion,
      name: "skiff",
      type: "bridge",
      bridge: "cni0",
      isGateway: true,
      mtu: 1450,
      ipMasq: false, // subnet.env says FLANNEL_IPMASQ=true: the overlay masquerades
      hairpinMode: true,
      ipam: {
        type: "host-local",
        dataDir: node.ipamDataDir,
        ranges: [[{ subnet, gateway: "10.244.1.1" }]],
        routes: [{ dst: "10.244.0.0/16", gw: "10.244.1.1" }],
      },
    };
    const env = (command: string, id: string, netns: string) => ({
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: "eth0",
      CNI_PATH: node.binDir,
    });
    const a = await node.plugin(env("ADD", `s${tag}`, skiffNs), JSON.stringify(skiffConf));
    assert.equal(a.code, 0, `skiff ADD ${version}: ${a.stdout} ${a.stderr}`);
    const b = await node.plugin(env("ADD", `r${tag}`, refNs), JSON.stringify(refConf), "bridge");
    assert.equal(b.code, 0, `bridge ADD ${version}: ${b.stdout}`);
    const skiffResult = JSON.parse(a.stdout);
    const refResult = JSON.parse(b.stdout);
    assert.equal(skiffResult.cniVersion, version);
    assert.deepEqual(normalize(skiffResult), normalize(refResult), `result shape ${version}`);
    const skiffIp = skiffResult.ips[0].address as string;
    const refIp = refResult.ips[0].address as string;
    assert.notEqual(skiffIp, refIp);
    assert.match(skiffIp, /^10\.244\.1\.\d+\/24$/);
    assert.deepEqual(
      await podView(skiffNs, skiffIp),
      await podView(refNs, refIp),
      `pod ${version}`,
    );
    const veth = (r: Json) =>
      String((r.interfaces as Json[]).find((i) => String(i.name).startsWith("veth"))!.name);
    const hostA = await hostView(node.nsPath, veth(skiffResult));
    assert.deepEqual(hostA, await hostView(node.nsPath, veth(refResult)), `host side ${version}`);
    assert.deepEqual(hostA, { master: "cni0", mtu: 1450, hairpin: true });
    if (version !== "0.3.1") {
      const c1 = await node.plugin(
        env("CHECK", `s${tag}`, skiffNs),
        JSON.stringify({ ...skiffConf, prevResult: skiffResult }),
      );
      assert.equal(c1.code, 0, `skiff CHECK ${version}: ${c1.stdout}`);
      const c2 = await node.plugin(
        env("CHECK", `r${tag}`, refNs),
        JSON.stringify({ ...refConf, prevResult: refResult }),
        "bridge",
      );
      assert.equal(c2.code, 0, `bridge CHECK ${version}: ${c2.stdout}`);
    }
    const d1 = await node.plugin(env("DEL", `s${tag}`, skiffNs), JSON.stringify(skiffConf));
    assert.equal(d1.code, 0, d1.stdout);
    const d2 = await node.plugin(env("DEL", `r${tag}`, refNs), JSON.stringify(refConf), "bridge");
    assert.equal(d2.code, 0, d2.stdout);
    await run(["ip", "netns", "del", `${node.prefix}s${tag}`]);
    await run(["ip", "netns", "del", `${node.prefix}r${tag}`]);
    const after = await node.snapshot();
    // the bridge itself stays (as with flannel); nothing of either Pod does
    assert.deepEqual(after.delegates, []);
    assert.deepEqual(after.allocations, []);
    assert.deepEqual(after.natRules, before.natRules);
    assert.deepEqual(after.links, ["cni0", "lo"]);
  }
});

Deno.test("CHECK fails when the Pod's address or route is gone", async () => {
  await using node = await createCniNode();
  const netns = await node.addNetns("p1");
  const conf = {
    cniVersion: "1.0.0",
    name: "skiff",
    type: "skiff",
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
  };
  const env = (command: string) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: "p1",
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: node.binDir,
  });
  const add = await node.plugin(env("ADD"), JSON.stringify(conf));
  assert.equal(add.code, 0, add.stdout);
  const result = JSON.parse(add.stdout);
  const check = () => node.plugin(env("CHECK"), JSON.stringify({ ...conf, prevResult: result }));
  assert.equal((await check()).code, 0);
  await run(["ip", "route", "del", "10.244.0.0/16"], { netns });
  const noRoute = await check();
  assert.notEqual(noRoute.code, 0);
  assert.equal(JSON.parse(noRoute.stdout).code, 102);
  assert.match(
    JSON.parse(noRoute.stdout).msg,
    /route to 10\.244\.0\.0\/16 via 10\.244\.1\.1 is missing/,
  );
  await run(["ip", "route", "add", "10.244.0.0/16", "via", "10.244.1.1"], { netns });
  assert.equal((await check()).code, 0);
  await run(["ip", "addr", "flush", "dev", "eth0"], { netns });
  const noAddr = await check();
  assert.notEqual(noAddr.code, 0);
  assert.match(JSON.parse(noAddr.stdout).msg, /address 10\.244\.1\.2\/24 is missing/);
  const del = await node.plugin(env("DEL"), JSON.stringify(conf));
  assert.equal(del.code, 0, del.stdout);
});
