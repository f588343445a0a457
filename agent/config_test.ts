/** Config validation: defaults, flags over the file, and one clear message per bad field. */
import assert from "node:assert/strict";
import { applyFlags, ConfigError, DEFAULT_CONFIG, loadConfig, parseConfig } from "./config.ts";

Deno.test("parseConfig() fills every default from an empty object", () => {
  const config = parseConfig({});
  assert.equal(config.dataplane, "auto");
  assert.equal(config.healthAddress, "0.0.0.0:10256");
  assert.deepEqual(config.store, { type: "embedded", dir: "/var/lib/skiff/store" });
  assert.equal(config.servicesFile, "/var/lib/skiff/services.json");
  assert.deepEqual(config.cni, DEFAULT_CONFIG.cni);
});

Deno.test("parseConfig() takes a full etcd config", () => {
  const config = parseConfig({
    nodeName: "node-1",
    uplink: { cidr: "192.168.56.0/24" },
    store: {
      type: "etcd",
      endpoints: ["http://192.168.56.11:2379"],
      prefix: "/coreos.com/network",
    },
    dataplane: "iptables",
    log: { level: "debug", format: "json" },
  });
  assert.equal(config.store.type, "etcd");
  assert.deepEqual(config.uplink, { cidr: "192.168.56.0/24" });
  assert.equal(config.log.format, "json");
});

Deno.test("flags override the file", () => {
  const raw = applyFlags(
    { dataplane: "bpf", uplink: { cidr: "10.0.0.0/8" }, log: { level: "info" } },
    { dataplane: "iptables", iface: "eth1", "log-level": "debug" },
  );
  const config = parseConfig(raw);
  assert.equal(config.dataplane, "iptables");
  assert.deepEqual(config.uplink, { iface: "eth1" });
  assert.equal(config.log.level, "debug");
});

const BAD: [unknown, string, RegExp][] = [
  [[], "(root)", /JSON object/],
  ["text", "(root)", /JSON object/],
  [{ nodename: "x" }, "nodename", /unknown field/],
  [{ nodeName: 5 }, "nodeName", /must be a string/],
  [{ nodeName: "Node_1" }, "nodeName", /DNS name/],
  [{ stateDir: "var/lib" }, "stateDir", /absolute path/],
  [{ stateDir: "" }, "stateDir", /empty/],
  [{ pinDir: "/tmp/pins" }, "pinDir", /bpffs/],
  [{ cgroupPath: "cgroup" }, "cgroupPath", /absolute/],
  [{ netns: "skn1" }, "netns", /absolute/],
  [{ uplink: "eth0" }, "uplink", /object/],
  [{ uplink: { name: "eth0" } }, "uplink.name", /unknown field/],
  [{ uplink: { iface: "an-interface-name-too-long" } }, "uplink.iface", /interface name/],
  [{ uplink: { ip: "10.0.0.300" } }, "uplink.ip", /not an IPv4/],
  [{ uplink: { cidr: "10.0.0.0/33" } }, "uplink.cidr", /prefix/],
  [{ uplink: { iface: "eth0", ip: "10.0.0.1" } }, "uplink", /only one/],
  [{ store: { type: "consul" } }, "store.type", /one of embedded, etcd/],
  [{ store: { type: "etcd" } }, "store.endpoints", /non-empty list/],
  [{ store: { type: "etcd", endpoints: [] } }, "store.endpoints", /non-empty/],
  [{ store: { type: "etcd", endpoints: ["127.0.0.1:2379"] } }, "store.endpoints[0]", /URL/],
  [
    { store: { type: "etcd", endpoints: ["http://a:1"], prefix: "coreos" } },
    "store.prefix",
    /start with/,
  ],
  [{ store: { type: "etcd", endpoints: ["http://a:1"], dir: "/x" } }, "store.dir", /unknown/],
  [{ store: { type: "embedded", endpoints: ["http://a:1"] } }, "store.endpoints", /unknown/],
  [{ store: { type: "embedded", dir: "rel" } }, "store.dir", /absolute/],
  [{ dataplane: "xdp" }, "dataplane", /one of auto, bpf, iptables, ipvs/],
  [{ dataplane: true }, "dataplane", /string/],
  [{ servicesFile: "services.json" }, "servicesFile", /absolute/],
  [{ ipMasq: "yes" }, "ipMasq", /true or false/],
  [{ cni: { confdir: "/etc" } }, "cni.confdir", /unknown/],
  [{ cni: { binDir: "opt/cni/bin" } }, "cni.binDir", /absolute/],
  [{ cni: { bridge: "" } }, "cni.bridge", /empty/],
  [{ cni: { bridge: "bridge/0" } }, "cni.bridge", /interface name/],
  [{ healthAddress: "10256" }, "healthAddress", /host:port/],
  [{ healthAddress: "0.0.0.0:70000" }, "healthAddress", /outside 1..65535/],
  [{ metricsAddress: "300.0.0.1:9000" }, "metricsAddress", /not an IPv4/],
  [{ log: { level: "trace" } }, "log.level", /one of debug, info, warn, error/],
  [{ log: { format: "yaml" } }, "log.format", /one of text, json/],
  [{ log: { colour: true } }, "log.colour", /unknown/],
  [{ resyncSeconds: 0 }, "resyncSeconds", /1 to 3600/],
  [{ resyncSeconds: 1.5 }, "resyncSeconds", /integer/],
  [{ resyncSeconds: "30" }, "resyncSeconds", /integer/],
  [{ network: [] }, "network", /object/],
];

for (const [raw, field, message] of BAD) {
  Deno.test(`parseConfig() refuses ${JSON.stringify(raw)} naming "${field}"`, () => {
    assert.throws(() => parseConfig(raw), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.field, field);
      assert.match(error.message, message);
      assert.match(
        error.message,
        new RegExp(`config field "${field.replace(/[[\]().]/g, "\\$&")}"`),
      );
      return true;
    });
  });
}

Deno.test("loadConfig() reports a file that is not JSON, and defaults a missing one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "skiff-config-" });
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, "{ nodeName: ");
    await assert.rejects(loadConfig(`${dir}/bad.json`), /not valid JSON/);
    const config = await loadConfig(`${dir}/missing.json`, { "node-name": "n9" });
    assert.equal(config.nodeName, "n9");
    await assert.rejects(loadConfig(`${dir}/missing.json`, {}, { required: true }), /cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
