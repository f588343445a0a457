/**
 * The SubnetStore suite against the embedded store (files with flock under a temp dir), plus
 * what only it has: several OS processes sharing one dir.
 * @module
 */
import assert from "node:assert/strict";
import { createEmbeddedStore } from "../../agent/overlay/embedded_store.ts";
import { openSubnetStore } from "../../agent/overlay/open_store.ts";
import { subnetKey } from "../../agent/overlay/subnet_store.ts";
import { subnetStoreSuite } from "./subnet_store_suite.ts";

Deno.test("embedded store passes the SubnetStore suite", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "skiff-store-" });
  let n = 0;
  try {
    await subnetStoreSuite(t, () => {
      const dir = `${root}/${n++}`;
      const path = `${dir}/leases.json`;
      const readState = async () => {
        try {
          return JSON.parse(await Deno.readTextFile(path));
        } catch {
          return { revision: 0, leases: {}, events: [] };
        }
      };
      return Promise.resolve({
        open: (o = {}) => createEmbeddedStore({ dir, ttlMs: o.ttlMs, pollMs: 50 }),
        async writeRaw(subnet: string, value: string) {
          // Like a hand edit or a disk fault: bypasses the store's checks but keeps its format.
          await Deno.mkdir(dir, { recursive: true });
          const state = await readState();
          const key = subnetKey(subnet);
          state.revision++;
          state.events.push({ rev: state.revision, type: "changed", key, value, expiresAt: 0 });
          state.leases[key] = { value, expiresAt: Date.now() + 3600e3 };
          await Deno.writeTextFile(path, JSON.stringify(state));
        },
        async rawExists(subnet: string) {
          return subnetKey(subnet) in (await readState()).leases;
        },
      });
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("embedded store: agents in separate processes never share a subnet", async () => {
  const dir = await Deno.makeTempDir({ prefix: "skiff-store-" });
  try {
    const store = await createEmbeddedStore({ dir });
    await store.initNetworkConfig({
      Network: "10.70.0.0/21",
      SubnetLen: 24,
      Backend: { Type: "vxlan" },
    });
    const module = new URL("../../agent/overlay/embedded_store.ts", import.meta.url).href;
    const script = `
      const { createEmbeddedStore } = await import(${JSON.stringify(module)});
      const s = await createEmbeddedStore({ dir: Deno.args[0] });
      const n = Number(Deno.args[1]);
      const l = await s.acquireLease({ publicIp: "192.168.1." + n, backendType: "vxlan", vni: 1,
        vtepMac: "02:00:00:00:00:0" + n });
      console.log(l.subnet);`;
    const deno = Deno.execPath();
    const children = Array.from({ length: 6 }, (_, i) =>
      new Deno.Command(deno, {
        args: ["eval", script, dir, String(i + 1)],
        stdout: "piped",
        stderr: "piped",
      }).output());
    const outputs = await Promise.all(children);
    const subnets = outputs.map((o) => {
      assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
      return new TextDecoder().decode(o.stdout).trim();
    });
    assert.equal(new Set(subnets).size, 6, subnets.join(" "));
    assert.equal((await store.listLeases()).leases.length, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openSubnetStore() opens the configured store and seeds its network config", async () => {
  const dir = await Deno.makeTempDir({ prefix: "skiff-store-" });
  try {
    await assert.rejects(
      () => openSubnetStore({ type: "embedded", dir }, { network: { Network: "10.1.0.0/16" } }),
      /"Backend": is missing/,
    );
    await assert.rejects(() => Deno.stat(`${dir}/config.json`), Deno.errors.NotFound);
    const store = await openSubnetStore({ type: "embedded", dir }, {
      network: { Network: "10.1.0.0/16", Backend: { Type: "vxlan", VNI: 4 } },
    });
    assert.equal(store.kind, "embedded");
    assert.equal((await store.getNetworkConfig()).backend.vni, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
