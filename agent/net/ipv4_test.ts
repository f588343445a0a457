// IPv4 text parsing: exactly the dotted quads, nothing that merely looks like one.
import assert from "node:assert/strict";
import { formatIpv4, parseIpv4, tryParseIpv4 } from "./ipv4.ts";

Deno.test("tryParseIpv4() reads dotted quads in host order", () => {
  assert.equal(tryParseIpv4("0.0.0.0"), 0);
  assert.equal(tryParseIpv4("10.96.0.10"), 0x0a60000a);
  assert.equal(tryParseIpv4("255.255.255.255"), 0xffffffff);
  assert.equal(tryParseIpv4("192.168.100.250"), 0xc0a864fa);
  for (let i = 0; i < 1000; i++) {
    const v = (i * 2654435761) >>> 0;
    assert.equal(tryParseIpv4(formatIpv4(v)), v);
  }
});

Deno.test("tryParseIpv4() refuses anything but four decimal octets 0-255 without leading zeros", () => {
  const bad = [
    "",
    ".",
    "1.2.3",
    "1.2.3.4.",
    ".1.2.3.4",
    "1..2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.2.3.00",
    "1.2.3.04",
    "256.1.1.1",
    "1.2.3.1000",
    " 1.2.3.4",
    "1.2.3.4\n",
    "1.2.3.+4",
    "1.2.3.٣",
    "0x1.2.3.4",
    "1.2.3.4/32",
  ];
  for (const text of bad) assert.equal(tryParseIpv4(text), undefined, JSON.stringify(text));
  assert.throws(() => parseIpv4("1.2.3.04"), /"1\.2\.3\.04" is not an IPv4 address/);
});
