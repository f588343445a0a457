/**
 * Node rules on a real kernel, inside lab node namespaces: SNAT seen on the wire, Pod↔Pod
 * addresses kept, repair after a flush / reorder / lost jump with foreign rules untouched,
 * clean removal, and legacy vs nft detection.
 * @module
 */
import assert from "node:assert/strict";
import { createLab, type LabNode } from "../lab/lab.ts";
import {
  detectIptablesBackend,
  type IptablesMode,
  makeBackend,
} from "../../agent/fallback/iptables_backend.ts";
import { ensureNodeRules, removeNodeRules } from "../../agent/fallback/node_rules.ts";
import { addPod, ask, CLUSTER_CIDR, podCidr, routePodSubnets, startPeerEcho } from "./lab_pods.ts";

function config(node: LabNode) {
  return { clusterCidr: CLUSTER_CIDR, podCidr: podCidr(node) };
}

Deno.test("node rules masquerade Pod traffic leaving the cluster and keep Pod-to-Pod addresses", async () => {
  await using lab = await createLab({ nodes: 2 });
  const [n1, n2] = lab.nodes;
  const p1 = await addPod(lab, n1, 1);
  const p2 = await addPod(lab, n2, 1);
  await routePodSubnets(lab);
  await startPeerEcho(lab, lab.outside, 8080);
  await startPeerEcho(lab, p2, 8080);

  // Without masquerade the outside host cannot answer a Pod address (no route back).
  assert.equal(await ask(p1, lab.outside.ip!, 8080), "");

  for (const node of lab.nodes) {
    const backend = makeBackend("legacy", "test", node.nsPath);
    const first = await ensureNodeRules(backend, config(node));
    assert.deepEqual(first.rewritten, ["nat/SKIFF-POSTRTG", "filter/SKIFF-FWD"]);
  }
  assert.equal(await ask(p1, lab.outside.ip!, 8080), n1.ip, "outside sees the node address");
  const ct = await n1.run(["conntrack", "-L", "-p", "tcp", "--orig-dst", lab.outside.ip!]);
  assert.match(ct.stdout, new RegExp(`src=${lab.outside.ip} dst=${n1.ip} `), ct.stdout);
  assert.equal(await ask(p1, p2.ip!, 8080), p1.ip, "Pod to Pod keeps the Pod address");
});

async function foreignLines(node: LabNode, mode: IptablesMode): Promise<string[]> {
  const out = await node.run([`iptables-${mode}-save`]);
  return out.stdout.split("\n").filter((l) => /^(-A|:)/.test(l) && !l.includes("SKIFF"));
}

for (const mode of ["legacy", "nft"] as const) {
  Deno.test(`node rules (${mode}) are repaired after a flush, a reorder and a lost jump, foreign rules untouched`, async () => {
    await using lab = await createLab({ nodes: 1, outside: false });
    const node = lab.nodes[0];
    const ipt = (...args: string[]) => node.run([`iptables-${mode}`, ...args]);
    await ipt("-t", "nat", "-N", "FOREIGN");
    await ipt("-t", "nat", "-A", "FOREIGN", "-s", "10.9.0.0/16", "-j", "RETURN");
    await ipt("-t", "nat", "-A", "POSTROUTING", "-j", "FOREIGN");
    await ipt("-A", "FORWARD", "-s", "10.9.0.0/16", "-j", "DROP");
    const foreign = await foreignLines(node, mode);

    const backend = makeBackend(mode, "test", node.nsPath);
    const first = await ensureNodeRules(backend, config(node));
    assert.equal(first.jumpsAdded, 2);
    const steady = await ensureNodeRules(backend, config(node));
    assert.deepEqual(steady, { rewritten: [], jumpsAdded: 0, jumpsRemoved: 0, operations: 0 });
    const good = (await node.run([`iptables-${mode}-save`])).stdout;

    await ipt("-t", "nat", "-F", "SKIFF-POSTRTG");
    const afterFlush = await ensureNodeRules(backend, config(node));
    assert.deepEqual(afterFlush.rewritten, ["nat/SKIFF-POSTRTG"]);

    // Reorder: move the first rule to the end.
    const rule1 = (await node.run([`iptables-${mode}`, "-t", "nat", "-S", "SKIFF-POSTRTG"]))
      .stdout.split("\n").find((l) => l.startsWith("-A SKIFF-POSTRTG"))!;
    await ipt("-t", "nat", "-D", "SKIFF-POSTRTG", "1");
    await node.run(["sh", "-c", `iptables-${mode} -t nat ${rule1}`]);
    const afterReorder = await ensureNodeRules(backend, config(node));
    assert.deepEqual(afterReorder.rewritten, ["nat/SKIFF-POSTRTG"]);

    await ipt("-t", "filter", "-F", "FORWARD");
    await ipt("-A", "FORWARD", "-s", "10.9.0.0/16", "-j", "DROP");
    await ipt(
      "-t",
      "nat",
      "-I",
      "POSTROUTING",
      "-m",
      "comment",
      "--comment",
      "skiff: node masquerade rules",
      "-j",
      "SKIFF-POSTRTG",
    );
    const afterJumps = await ensureNodeRules(backend, config(node));
    assert.equal(afterJumps.jumpsAdded, 1, "FORWARD jump restored");
    assert.equal(afterJumps.jumpsRemoved, 1, "duplicate POSTROUTING jump removed");

    const repaired = (await node.run([`iptables-${mode}-save`])).stdout;
    const ours = (t: string) => t.split("\n").filter((l) => l.includes("SKIFF")).sort();
    assert.deepEqual(ours(repaired), ours(good));
    assert.deepEqual(await foreignLines(node, mode), foreign);

    assert.equal(await removeNodeRules(backend), 2);
    const after = (await node.run([`iptables-${mode}-save`])).stdout;
    assert.doesNotMatch(after, /SKIFF/);
    assert.deepEqual(await foreignLines(node, mode), foreign);
  });
}

Deno.test("detectIptablesBackend picks the flavour that already holds rules", async () => {
  await using lab = await createLab({ nodes: 3, outside: false });
  const [legacyNode, nftNode, emptyNode] = lab.nodes;
  await legacyNode.run(["iptables-legacy", "-A", "INPUT", "-s", "10.1.0.0/16", "-j", "ACCEPT"]);
  await nftNode.run(["iptables-nft", "-A", "INPUT", "-s", "10.1.0.0/16", "-j", "ACCEPT"]);

  const legacy = await detectIptablesBackend({ netns: legacyNode.nsPath });
  assert.equal(legacy.mode, "legacy", legacy.reason);
  assert.match(legacy.reason, /legacy holds more rules \(1 rules in legacy, 0 in nft\)/);
  const nft = await detectIptablesBackend({ netns: nftNode.nsPath });
  assert.equal(nft.mode, "nft", nft.reason);
  const empty = await detectIptablesBackend({ netns: emptyNode.nsPath });
  assert.match(empty.reason, /no rules either way/);

  // Once skiff's chains are in nft, nft stays chosen even when legacy gains more rules.
  await ensureNodeRules(nft, config(nftNode));
  for (let i = 0; i < 12; i++) {
    await nftNode.run(["iptables-legacy", "-A", "INPUT", "-s", `10.2.${i}.0/24`, "-j", "ACCEPT"]);
  }
  const sticky = await detectIptablesBackend({ netns: nftNode.nsPath });
  assert.equal(sticky.mode, "nft", sticky.reason);
  assert.match(sticky.reason, /skiff chains already in iptables-nft/);
});
