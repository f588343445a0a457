/** subnet.env: flannel's variables, gateway-style FLANNEL_SUBNET, atomic write, round trip. */
import assert from "node:assert/strict";
import { formatSubnetEnv, parseSubnetEnv, readSubnetEnv, writeSubnetEnv } from "./subnet_env.ts";

Deno.test("formatSubnetEnv() writes what flanneld writes", () => {
  const text = formatSubnetEnv({
    network: "10.244.0.0/16",
    subnet: "10.244.1.0/24",
    mtu: 1450,
    ipMasq: true,
  });
  assert.equal(
    text,
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n" +
      "FLANNEL_IPMASQ=true\n",
  );
});

Deno.test("parseSubnetEnv() reads flanneld's file (with IPv6 lines) and names what is missing", () => {
  const flanneld = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\n" +
    "FLANNEL_IPV6_NETWORK=::/0\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";
  assert.deepEqual(parseSubnetEnv(flanneld), {
    network: "10.244.0.0/16",
    subnet: "10.244.7.0/24",
    mtu: 1450,
    ipMasq: false,
  });
  assert.throws(
    () => parseSubnetEnv("FLANNEL_NETWORK=10.244.0.0/16\n"),
    /FLANNEL_SUBNET is missing/,
  );
});

Deno.test("writeSubnetEnv() replaces the file atomically and readSubnetEnv() reads it back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/run/flannel/subnet.env`;
    const env = { network: "10.244.0.0/16", subnet: "10.244.3.0/24", mtu: 1400, ipMasq: false };
    await writeSubnetEnv(path, env);
    await writeSubnetEnv(path, { ...env, mtu: 1450 });
    assert.deepEqual(await readSubnetEnv(path), { ...env, mtu: 1450 });
    assert.deepEqual([...Deno.readDirSync(`${dir}/run/flannel`)].map((e) => e.name), [
      "subnet.env",
    ]);
    assert.equal(await readSubnetEnv(`${dir}/missing`), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
