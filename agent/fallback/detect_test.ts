/** Data plane choice: pure decisions, and the real probes of this host (which has no IP_VS). */
import assert from "node:assert/strict";
import { chooseDataplane, decideDataplane, type HostProbes, probeHost } from "./detect.ts";

const yes = (detail: string) => ({ ok: true, detail });
const no = (detail: string) => ({ ok: false, detail });
const all: HostProbes = {
  btf: yes("BTF"),
  bpfSyscall: yes("bpf() works"),
  cgroup2: yes("cgroup v2"),
  bpffs: yes("bpffs"),
  ipvs: yes("/proc/net/ip_vs exists"),
};

Deno.test("decideDataplane() auto prefers bpf, then ipvs, then iptables, saying why", () => {
  assert.equal(decideDataplane("auto", all).kind, "bpf");
  const noBtf = { ...all, btf: no("no /sys/kernel/btf/vmlinux") };
  const ipvs = decideDataplane("auto", noBtf);
  assert.equal(ipvs.kind, "ipvs");
  assert.match(ipvs.reason, /bpf unavailable \(no \/sys\/kernel\/btf\/vmlinux\)/);
  const neither = decideDataplane("auto", { ...noBtf, ipvs: no("no /proc/net/ip_vs") });
  assert.equal(neither.kind, "iptables");
  assert.match(neither.reason, /no IP_VS \(no \/proc\/net\/ip_vs\)/);
});

Deno.test("decideDataplane() refuses an explicit choice the host cannot run", () => {
  assert.throws(
    () => decideDataplane("ipvs", { ...all, ipvs: no("modprobe failed") }),
    /this kernel has no IP_VS support: modprobe failed/,
  );
  assert.throws(
    () => decideDataplane("bpf", { ...all, bpffs: no("bpffs not mounted") }),
    /bpffs not mounted/,
  );
  assert.throws(() => decideDataplane("ebpf" as "bpf", all), /--dataplane must be/);
  assert.equal(decideDataplane("iptables", all).kind, "iptables");
});

Deno.test("chooseDataplane() on this host: no IP_VS, said plainly", async () => {
  const probes = await probeHost();
  assert.equal(probes.ipvs.ok, await Deno.stat("/proc/net/ip_vs").then(() => true, () => false));
  if (probes.ipvs.ok) return; // a host with IP_VS (the Vagrant VMs): nothing more to check here
  await assert.rejects(
    chooseDataplane("ipvs"),
    /^Error: this kernel has no IP_VS support: no \/proc\/net\/ip_vs/,
  );
  const auto = await chooseDataplane("auto");
  assert.notEqual(auto.kind, "ipvs");
  assert.ok(auto.reason.length > 0);
});
