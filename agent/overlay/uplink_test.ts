/** Uplink choice: explicit, by IP/CIDR, from the default route, never NAT-only if avoidable. */
import assert from "node:assert/strict";
import type { LinkInfo, RouteInfo } from "../net/iproute.ts";
import { chooseUplink, UplinkError } from "./uplink.ts";

const link = (ifname: string, ip: string, prefixlen = 24, mtu = 1500): LinkInfo => ({
  ifindex: 0,
  ifname,
  mtu,
  flags: ["UP"],
  addr_info: [{ family: "inet", local: ip, prefixlen, scope: "global" }],
});
const vagrant = [
  { ...link("lo", "127.0.0.1", 8) },
  link("eth0", "10.0.2.15"),
  link("eth1", "192.168.56.11", 24, 9000),
];
const viaEth0: RouteInfo[] = [{ dst: "default", gateway: "10.0.2.2", dev: "eth0" }];

Deno.test("chooseUplink() never picks the NAT-only 10.0.2.15 when another interface fits", () => {
  const up = chooseUplink({}, vagrant, viaEth0);
  assert.equal(up.name, "eth1");
  assert.equal(up.ip, "192.168.56.11");
  assert.equal(up.mtu, 9000);
  assert.match(up.reason, /NAT-only eth0; using eth1/);
});

Deno.test("chooseUplink() follows the default route otherwise (lowest metric first)", () => {
  const links = [link("eth0", "192.168.100.11"), link("eth1", "172.16.0.5")];
  const routes: RouteInfo[] = [
    { dst: "default", gateway: "172.16.0.1", dev: "eth1", metric: 200 },
    { dst: "default", gateway: "192.168.100.1", dev: "eth0", metric: 100 },
  ];
  const up = chooseUplink({}, links, routes);
  assert.equal(up.name, "eth0");
  assert.equal(up.reason, "default route via eth0");
  assert.deepEqual(up.cidr, { base: (192 << 24 | 168 << 16 | 100 << 8) >>> 0, prefix: 24 });
});

Deno.test("chooseUplink() honours an explicit iface, IP or CIDR", () => {
  assert.equal(chooseUplink({ iface: "eth0" }, vagrant, viaEth0).ip, "10.0.2.15");
  assert.equal(chooseUplink({ ip: "192.168.56.11" }, vagrant, viaEth0).name, "eth1");
  assert.equal(chooseUplink({ cidr: "192.168.0.0/16" }, vagrant, viaEth0).name, "eth1");
});

Deno.test("chooseUplink() says what it looked at when nothing fits", () => {
  assert.throws(
    () => chooseUplink({ iface: "eth9" }, vagrant, viaEth0),
    (e: Error) => e instanceof UplinkError && /"eth9" is missing.*eth0=10.0.2.15/.test(e.message),
  );
  assert.throws(
    () => chooseUplink({ ip: "1.2.3.4" }, vagrant, viaEth0),
    /no interface has address/,
  );
  assert.throws(() => chooseUplink({}, [link("lo", "127.0.0.1", 8)], []), /no uplink/);
  const down = { ...link("eth0", "192.168.1.1"), flags: [] };
  assert.throws(() => chooseUplink({ iface: "eth0" }, [down], []), /missing, down/);
});
