/** net-conf.json parsing: flannel's defaults, and one clear message per bad field. */
import assert from "node:assert/strict";
import { formatIpv4, parseCidr } from "../net/ipv4.ts";
import { NetConfigError, netConfigToJson, parseNetConfig } from "./net_config.ts";
import { planAcquire } from "./subnet_store.ts";

Deno.test("parseNetConfig() fills flannel's defaults", () => {
  const c = parseNetConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  assert.equal(c.subnetLen, 24);
  assert.equal(formatIpv4(c.subnetMin), "10.244.1.0");
  assert.equal(formatIpv4(c.subnetMax), "10.244.255.0");
  assert.deepEqual(c.backend, { type: "vxlan", vni: 1, port: 8472, directRouting: false });
  const small = parseNetConfig({ Network: "10.1.2.0/24", Backend: { Type: "vxlan" } });
  assert.equal(small.subnetLen, 26, "a network smaller than /22 is split in four");
  assert.deepEqual(netConfigToJson(c), {
    Network: "10.244.0.0/16",
    SubnetLen: 24,
    SubnetMin: "10.244.1.0",
    SubnetMax: "10.244.255.0",
    Backend: { Type: "vxlan", VNI: 1, Port: 8472 },
  });
});

Deno.test("parseNetConfig() refuses bad configs naming the field", () => {
  const bad: [unknown, RegExp][] = [
    ["{", /\(document\).*not valid JSON/],
    [{ Backend: { Type: "vxlan" } }, /"Network": is required/],
    [{ Network: "10.244.1.0/16", Backend: { Type: "vxlan" } }, /"Network".*host bits/],
    [
      { Network: "10.244.0.0/16", SubnetLen: 16, Backend: { Type: "vxlan" } },
      /"SubnetLen".*longer than the Network prefix \/16/,
    ],
    [
      { Network: "10.244.0.0/16", SubnetLen: 17, Backend: { Type: "vxlan" } },
      /"SubnetLen".*fewer than four/,
    ],
    [
      { Network: "10.244.0.0/16", SubnetLen: 31, Backend: { Type: "vxlan" } },
      /"SubnetLen".*at most \/30/,
    ],
    [
      { Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 0 } },
      /"Backend.VNI": 0 is out of range 1..16777215/,
    ],
    [{ Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 16777216 } }, /"Backend.VNI"/],
    [{ Network: "10.244.0.0/16", Backend: { Type: "vxlan", Port: 70000 } }, /"Backend.Port"/],
    [
      { Network: "10.244.0.0/16", Backend: { Type: "geneve" } },
      /"Backend.Type": unknown backend type "geneve"/,
    ],
    [
      { Network: "10.244.0.0/16", Backend: { Type: "host-gw" } },
      /"Backend.Type": "host-gw" is not supported/,
    ],
    [{ Network: "10.244.0.0/16" }, /"Backend": is missing/],
    [
      { Network: "10.244.0.0/16", Backend: { Type: "vxlan" }, Netwrok: "x" },
      /"Netwrok": unknown field/,
    ],
    [
      { Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNi: 2 } },
      /"Backend.VNi": unknown field/,
    ],
    [
      { Network: "10.244.0.0/16", Backend: { Type: "vxlan", GBP: true } },
      /"Backend.GBP".*not support/,
    ],
    [
      { Network: "10.244.0.0/16", SubnetMin: "10.245.0.0", Backend: { Type: "vxlan" } },
      /"SubnetMin".*outside/,
    ],
    [
      { Network: "10.244.0.0/16", SubnetMax: "10.244.3.7", Backend: { Type: "vxlan" } },
      /"SubnetMax".*boundary/,
    ],
    [{
      Network: "10.244.0.0/16",
      SubnetMin: "10.244.9.0",
      SubnetMax: "10.244.3.0",
      Backend: { Type: "vxlan" },
    }, /"SubnetMin".*above SubnetMax/],
    [{ Network: "10.244.0.0/30", Backend: { Type: "vxlan" } }, /"Network".*too small/],
  ];
  for (const [input, message] of bad) {
    assert.throws(() => parseNetConfig(input), (e: unknown) => {
      assert.ok(e instanceof NetConfigError, `${JSON.stringify(input)}: ${e}`);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("parseNetConfig() refuses a Network overlapping a reserved prefix", () => {
  assert.throws(
    () =>
      parseNetConfig({ Network: "192.168.0.0/16", Backend: { Type: "vxlan" } }, {
        reserved: [{ cidr: parseCidr("192.168.100.0/24"), what: "the uplink subnet" }],
      }),
    /"Network": 192.168.0.0\/16 overlaps the uplink subnet 192.168.100.0\/24/,
  );
});

Deno.test("planAcquire() reuses our lease, then the previous subnet, else a free one", () => {
  const config = parseNetConfig({ Network: "10.9.0.0/22", Backend: { Type: "vxlan" } });
  const attrs = (ip: string) => ({
    publicIp: ip,
    backendType: "vxlan" as const,
    vni: 1,
    vtepMac: "02:00:00:00:00:01",
  });
  const leases = [{ subnet: "10.9.1.0/24", attrs: attrs("1.1.1.1") }];
  assert.deepEqual(planAcquire(config, leases, attrs("1.1.1.1")), {
    kind: "reuse",
    subnet: "10.9.1.0/24",
  });
  assert.deepEqual(
    planAcquire(config, leases, attrs("2.2.2.2"), { previousSubnet: "10.9.3.0/24" }),
    { kind: "create", subnet: "10.9.3.0/24" },
  );
  assert.deepEqual(
    planAcquire(config, leases, attrs("2.2.2.2"), { previousSubnet: "10.9.1.0/24" }, () => 0),
    { kind: "create", subnet: "10.9.2.0/24" },
  );
  assert.throws(
    () =>
      planAcquire(config, leases, attrs("2.2.2.2"), { occupied: ["10.9.2.0/24", "10.9.3.0/24"] }),
    /no free subnet/,
  );
});
