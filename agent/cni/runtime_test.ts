import assert from "node:assert/strict";
import { buildConflist, loadConflist, writeConflist } from "./conflist.ts";
import { parsePortMapping, pluginConf } from "./runtime.ts";

Deno.test("pluginConf passes runtimeConfig only for the plugin's declared capabilities", () => {
  const list = buildConflist({ subnetFile: "/r/subnet.env" });
  const ports = [{ hostPort: 8080, containerPort: 80, protocol: "tcp" as const }];
  const prev = { cniVersion: "1.0.0", ips: [] };
  const skiff = pluginConf(list, list.plugins[0], undefined, {
    portMappings: ports,
    bandwidth: {},
  });
  assert.equal(skiff.runtimeConfig, undefined);
  assert.equal(skiff.prevResult, undefined);
  assert.equal(skiff.name, "skiff");
  assert.equal(skiff.cniVersion, "1.0.0");
  const portmap = pluginConf(list, list.plugins[1], prev, { portMappings: ports, bandwidth: {} });
  assert.deepEqual(portmap.runtimeConfig, { portMappings: ports });
  assert.deepEqual(portmap.prevResult, prev);
  assert.equal(pluginConf(list, list.plugins[1], prev, {}).runtimeConfig, undefined);
});

Deno.test("writeConflist writes the list atomically and loadConflist reads it back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "skcl" });
  try {
    const path = `${dir}/etc/cni/net.d/10-skiff.conflist`;
    await writeConflist(path, { name: "k8s-pod-network", bridge: "cni1", dataDir: "/d" });
    const list = await loadConflist(path);
    assert.equal(list.name, "k8s-pod-network");
    assert.deepEqual(list.plugins.map((p) => p.type), ["skiff", "portmap"]);
    assert.deepEqual(list.plugins[0].delegate, {
      hairpinMode: true,
      isDefaultGateway: true,
      bridge: "cni1",
    });
    assert.deepEqual(list.plugins[1].capabilities, { portMappings: true });
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o644);
    const leftovers = [...Deno.readDirSync(`${dir}/etc/cni/net.d`)].map((e) => e.name);
    assert.deepEqual(leftovers, ["10-skiff.conflist"]);
    await Deno.writeTextFile(
      path,
      '{"name":"x","cniVersion":"0.4.0","cniVersions":["0.4.0","1.0.0","9.0.0"],"plugins":[{"type":"a"}]}',
    );
    assert.equal((await loadConflist(path)).cniVersion, "1.0.0");
    await Deno.writeTextFile(path, '{"name":"x","cniVersions":["9.0.0"],"plugins":[{"type":"a"}]}');
    await assert.rejects(() => loadConflist(path), /none of "cniVersions"/);
    await Deno.writeTextFile(path, '{"name":"x","cniVersion":"1.0.0","plugins":[{}]}');
    await assert.rejects(() => loadConflist(path), /plugins\[0\] has no "type"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parsePortMapping reads HOST:CONTAINER[/PROTO] and rejects the rest", () => {
  assert.deepEqual(parsePortMapping("8080:80"), {
    hostPort: 8080,
    containerPort: 80,
    protocol: "tcp",
  });
  assert.deepEqual(parsePortMapping("53:5353/udp"), {
    hostPort: 53,
    containerPort: 5353,
    protocol: "udp",
  });
  for (const bad of ["80", "0:80", "70000:80", "80:80/sctp", "a:b"]) {
    assert.throws(() => parsePortMapping(bad), TypeError, bad);
  }
});
