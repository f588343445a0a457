import assert from "node:assert/strict";
import { buildDelegate } from "./delegate.ts";
import { parseConf } from "./config.ts";
import { CniError } from "./errors.ts";
import { formatSubnetEnv, parseSubnetEnv } from "./subnet_env.ts";
import { convertResult } from "./version.ts";
import { pickDelegateVersion } from "./delegate_version.ts";
import { formatSubnetEnv as overlayFormat } from "../overlay/subnet_env.ts";

const ENV = parseSubnetEnv(
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
);

Deno.test("parseSubnetEnv reads flannel's variables and the gateway", () => {
  assert.deepEqual(ENV, {
    network: "10.244.0.0/16",
    subnet: "10.244.3.0/24",
    gateway: "10.244.3.1",
    mtu: 1450,
    ipMasq: true,
  });
  const text = formatSubnetEnv({
    network: "10.1.0.0/16",
    subnet: "10.1.2.1/24",
    mtu: 1400,
    ipMasq: false,
  });
  assert.equal(parseSubnetEnv(text).ipMasq, false);
  assert.throws(
    () => parseSubnetEnv("FLANNEL_NETWORK=10.1.0.0/16\n"),
    (e: CniError) => e.code === 100,
  );
});

Deno.test("buildDelegate makes flannel's bridge + host-local delegate; user options win", () => {
  const conf = parseConf(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "net1",
      type: "skiff",
      ipamDataDir: "/x/ipam",
      delegate: { hairpinMode: true, isDefaultGateway: true, mtu: 1400, bridge: "br9" },
    }),
    "ADD",
  );
  assert.deepEqual(buildDelegate(conf, ENV, "1.0.0"), {
    cniVersion: "1.0.0",
    name: "net1",
    type: "bridge",
    bridge: "br9",
    isGateway: true,
    mtu: 1400,
    ipMasq: false,
    hairpinMode: true,
    isDefaultGateway: true,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: "10.244.3.0/24", gateway: "10.244.3.1" }]],
      routes: [{ dst: "10.244.0.0/16", gw: "10.244.3.1" }],
      dataDir: "/x/ipam",
    },
  });
  const plain = buildDelegate(
    parseConf('{"cniVersion":"0.3.1","name":"n","type":"skiff"}', "ADD"),
    {
      ...ENV,
      ipMasq: false,
    },
    "0.3.1",
  );
  assert.equal(plain.bridge, "cni0");
  assert.equal(plain.ipMasq, true);
  assert.equal(plain.mtu, 1450);
});

Deno.test("parseConf rejects name or ipam inside delegate with a clear message", () => {
  for (const key of ["name", "ipam"]) {
    assert.throws(
      () =>
        parseConf(
          JSON.stringify({
            cniVersion: "1.0.0",
            name: "n",
            type: "skiff",
            delegate: { [key]: "x" },
          }),
          "ADD",
        ),
      (e: CniError) => e.code === 7 && e.message.includes(`"delegate" must not set "${key}"`),
    );
  }
});

Deno.test("convertResult adds ip versions for 0.x and drops them for 1.x", () => {
  const legacy = {
    cniVersion: "0.4.0",
    interfaces: [{ name: "eth0", sandbox: "/ns" }],
    ips: [{ version: "4", address: "10.0.0.2/24", interface: 0 }],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: {},
  };
  const v1 = convertResult(legacy, "1.1.0");
  assert.deepEqual(v1.ips, [{ address: "10.0.0.2/24", interface: 0 }]);
  assert.equal(v1.cniVersion, "1.1.0");
  assert.deepEqual(convertResult(v1, "0.3.1").ips, [{
    version: "4",
    address: "10.0.0.2/24",
    interface: 0,
  }]);
});

Deno.test("pickDelegateVersion keeps the result format when the delegate lacks the version", () => {
  const plugins111 = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];
  assert.equal(pickDelegateVersion("1.1.0", plugins111), "1.0.0");
  assert.equal(pickDelegateVersion("0.4.0", plugins111), "0.4.0");
  assert.throws(
    () => pickDelegateVersion("1.0.0", ["0.3.1", "0.4.0"]),
    (e: CniError) => e.code === 1,
  );
});

Deno.test("the plugin reads the subnet.env the overlay writes", () => {
  const text = overlayFormat({
    network: "10.244.0.0/16",
    subnet: "10.244.7.0/24",
    mtu: 1450,
    ipMasq: false,
  });
  assert.deepEqual(parseSubnetEnv(text), {
    network: "10.244.0.0/16",
    subnet: "10.244.7.0/24",
    gateway: "10.244.7.1",
    mtu: 1450,
    ipMasq: false,
  });
});
