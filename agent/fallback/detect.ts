/**
 * Choosing the Service data plane: `auto` takes bpf when the kernel and privileges allow it
 * (BTF, a working bpf() syscall, cgroup v2, bpffs), else ipvs when the kernel has IP_VS, else
 * iptables, and says why. An explicit choice the host cannot honour fails with a plain message.
 * @module
 */
import { targetExists } from "../fs.ts";
import type { DataplaneKind } from "../dataplane.ts";
import { run } from "../net/exec.ts";

/** What was requested on the command line (`--dataplane=`). */
export type DataplaneRequest = "auto" | DataplaneKind;

/** The decision and its reason (logged, and shown by `skiff status`). */
export interface DataplaneChoice {
  readonly kind: DataplaneKind;
  readonly reason: string;
}

/** One probe: did it pass, and what was seen. */
export interface Probe {
  readonly ok: boolean;
  readonly detail: string;
}

/** The host facts the decision rests on. */
export interface HostProbes {
  readonly btf: Probe;
  readonly bpfSyscall: Probe;
  readonly cgroup2: Probe;
  readonly bpffs: Probe;
  readonly ipvs: Probe;
}

/** IP_VS present: /proc/net/ip_vs (built in or loaded), else a loadable module (modprobe -n). */
export async function probeIpvs(): Promise<Probe> {
  if (await targetExists("/proc/net/ip_vs")) return { ok: true, detail: "/proc/net/ip_vs exists" };
  const out = await run(["modprobe", "-n", "ip_vs"], { allowFailure: true }).catch((e) => ({
    code: 127,
    stdout: "",
    stderr: String(e),
  }));
  if (out.code === 0) return { ok: true, detail: "the ip_vs module can be loaded" };
  const why = out.stderr.trim().split("\n").at(-1) ?? "";
  return { ok: false, detail: `no /proc/net/ip_vs and modprobe -n ip_vs failed (${why})` };
}

/** Probes this host (read-only). */
export async function probeHost(): Promise<HostProbes> {
  const mounts = await Deno.readTextFile("/proc/mounts").catch(() => "");
  const types = mounts.split("\n").map((l) => l.split(" ")[2]);
  const btf = await targetExists("/sys/kernel/btf/vmlinux");
  const bpf = await run(["bpftool", "-j", "prog", "show"], { allowFailure: true }).catch(() => ({
    code: 127,
    stdout: "",
    stderr: "bpftool not found",
  }));
  return {
    btf: { ok: btf, detail: btf ? "BTF at /sys/kernel/btf/vmlinux" : "no /sys/kernel/btf/vmlinux" },
    bpfSyscall: {
      ok: bpf.code === 0,
      detail: bpf.code === 0
        ? "bpf() works"
        : `bpf() refused: ${bpf.stderr.trim().split("\n").at(-1)}`,
    },
    cgroup2: {
      ok: types.includes("cgroup2"),
      detail: types.includes("cgroup2") ? "cgroup v2 mounted" : "no cgroup v2 mount",
    },
    bpffs: {
      ok: types.includes("bpf"),
      detail: types.includes("bpf") ? "bpffs mounted" : "bpffs not mounted",
    },
    ipvs: await probeIpvs(),
  };
}

/** Pure: the decision from the probes; throws when an explicit choice cannot run here. */
export function decideDataplane(request: DataplaneRequest, probes: HostProbes): DataplaneChoice {
  const bpfProbes = [probes.btf, probes.bpfSyscall, probes.cgroup2, probes.bpffs];
  const bpfOk = bpfProbes.every((p) => p.ok);
  const bpfWhyNot = bpfProbes.filter((p) => !p.ok).map((p) => p.detail).join("; ");
  switch (request) {
    case "bpf":
      if (!bpfOk) throw new Error(`this host cannot run the bpf data plane: ${bpfWhyNot}`);
      return { kind: "bpf", reason: "requested bpf" };
    case "ipvs":
      if (!probes.ipvs.ok) {
        throw new Error(`this kernel has no IP_VS support: ${probes.ipvs.detail}`);
      }
      return { kind: "ipvs", reason: `requested ipvs (${probes.ipvs.detail})` };
    case "iptables":
      return { kind: "iptables", reason: "requested iptables" };
    case "auto":
      if (bpfOk) {
        return {
          kind: "bpf",
          reason: `auto: ${bpfProbes.map((p) => p.detail).join(", ")}`,
        };
      }
      if (probes.ipvs.ok) {
        return {
          kind: "ipvs",
          reason: `auto: bpf unavailable (${bpfWhyNot}); ${probes.ipvs.detail}`,
        };
      }
      return {
        kind: "iptables",
        reason: `auto: bpf unavailable (${bpfWhyNot}); no IP_VS (${probes.ipvs.detail})`,
      };
    default:
      throw new TypeError(`--dataplane must be auto, bpf, ipvs or iptables, not "${request}"`);
  }
}

/** Probes the host and decides; the caller logs the reason. */
export async function chooseDataplane(request: DataplaneRequest): Promise<DataplaneChoice> {
  return decideDataplane(request, await probeHost());
}
