/**
 * `skiff doctor`: checks a node for the conditions that break Kubernetes networking in
 * practice, says why each matters, and applies the known fix where there is a safe one.
 * Each check reads the node's network namespace through subprocesses (ip, ethtool, iptables).
 * @module
 */
import { pathExists } from "./fs.ts";
import { run } from "./net/exec.ts";

/** Outcome of one check. */
export type CheckStatus = "ok" | "warn" | "fail" | "skip";

/** One finding. */
export interface CheckResult {
  readonly id: string;
  readonly status: CheckStatus;
  readonly detail: string;
  /** What to do about it (a command or a config change). */
  readonly fix?: string;
  /** True when `--fix` applied the fix. */
  readonly fixed?: boolean;
}

/** Where to look. */
export interface DoctorContext {
  /** Node network namespace path ("" = the current one). */
  readonly netns: string;
  /** The VXLAN device, e.g. "flannel.1". */
  readonly vxlanDevice: string;
  /** The uplink, when known. */
  readonly uplink?: string;
  readonly subnetFile: string;
  readonly pinDir: string;
  readonly cgroupPath: string;
  /** Is an agent serving this node right now (e.g. its /healthz answered)? */
  readonly agentRunning: boolean;
}

const ip = (ctx: DoctorContext, args: string[]) =>
  run(["ip", ...args], { netns: ctx.netns || undefined, allowFailure: true });

async function mounts(): Promise<string[][]> {
  return (await Deno.readTextFile("/proc/self/mounts")).split("\n").map((l) => l.split(" "));
}

async function checkBtf(): Promise<CheckResult> {
  return (await pathExists("/sys/kernel/btf/vmlinux"))
    ? { id: "kernel-btf", status: "ok", detail: "kernel BTF at /sys/kernel/btf/vmlinux" }
    : {
      id: "kernel-btf",
      status: "warn",
      detail: "no /sys/kernel/btf/vmlinux: CO-RE programs cannot be relocated",
      fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
    };
}

async function checkCgroup2(ctx: DoctorContext): Promise<CheckResult> {
  const m = (await mounts()).filter((f) => f[2] === "cgroup2").map((f) => f[1]);
  if (m.length === 0) {
    return {
      id: "cgroup-v2",
      status: "fail",
      detail: "no cgroup v2 mount: socket load balancing needs cgroup v2 hooks",
      fix:
        "mount -t cgroup2 none /sys/fs/cgroup/unified (or boot with systemd.unified_cgroup_hierarchy=1)",
    };
  }
  const on = m.some((p) => ctx.cgroupPath === p || ctx.cgroupPath.startsWith(p + "/"));
  return on
    ? {
      id: "cgroup-v2",
      status: "ok",
      detail: `cgroup v2 at ${m.join(", ")}; hooks on ${ctx.cgroupPath}`,
    }
    : {
      id: "cgroup-v2",
      status: "fail",
      detail: `cgroupPath ${ctx.cgroupPath} is not on a cgroup v2 mount (${m.join(", ")})`,
      fix: "set cgroupPath to a directory under the cgroup2 mount",
    };
}

async function checkBpffs(): Promise<CheckResult> {
  const ok = (await mounts()).some((f) => f[1] === "/sys/fs/bpf" && f[2] === "bpf");
  return ok ? { id: "bpffs", status: "ok", detail: "bpffs mounted at /sys/fs/bpf" } : {
    id: "bpffs",
    status: "fail",
    detail: "bpffs is not mounted: pinned maps and links (restart safety) are impossible",
    fix: "mount -t bpf bpf /sys/fs/bpf",
  };
}

function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(Deno.osRelease());
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

function checkTcx(): CheckResult {
  const [major, minor] = kernelVersion();
  const release = Deno.osRelease();
  return major > 6 || (major === 6 && minor >= 6)
    ? { id: "tcx", status: "ok", detail: `kernel ${release} has tcx links (≥ 6.6)` }
    : {
      id: "tcx",
      status: "warn",
      detail:
        `kernel ${release} has no tcx (needs 6.6): tc programs use clsact, which is not pinned`,
    };
}

async function checkIpvs(): Promise<CheckResult> {
  if (await pathExists("/proc/net/ip_vs")) {
    return { id: "ip-vs", status: "ok", detail: "ip_vs is available" };
  }
  const modules = await pathExists("/sys/module/ip_vs");
  return {
    id: "ip-vs",
    status: "warn",
    detail: modules
      ? "ip_vs module present but /proc/net/ip_vs missing"
      : "this kernel has no IP_VS support (CONFIG_IP_VS unset or module not loaded): the ipvs data plane is unavailable; bpf or iptables are used",
    fix: "modprobe ip_vs (if the kernel ships it)",
  };
}

function countRules(save: string): number {
  return save.split("\n").filter((l) => l.startsWith("-A ")).length;
}

async function checkIptablesMix(ctx: DoctorContext): Promise<CheckResult> {
  const legacy = await run(["iptables-legacy-save"], {
    netns: ctx.netns || undefined,
    allowFailure: true,
  });
  const nft = await run(["iptables-nft-save"], {
    netns: ctx.netns || undefined,
    allowFailure: true,
  });
  const l = legacy.code === 0 ? countRules(legacy.stdout) : 0;
  const n = nft.code === 0 ? countRules(nft.stdout) : 0;
  if (l > 0 && n > 0) {
    return {
      id: "iptables-mode",
      status: "fail",
      detail:
        `rules in both iptables-legacy (${l}) and iptables-nft (${n}): the two sets are evaluated separately and disagree (the classic kube-proxy/flannel outage)`,
      fix:
        "pick one backend for every tool on the node (update-alternatives --set iptables …) and flush the other",
    };
  }
  return {
    id: "iptables-mode",
    status: "ok",
    detail: l > 0
      ? `iptables-legacy in use (${l} rules)`
      : n > 0
      ? `iptables-nft in use (${n} rules)`
      : "no iptables rules yet",
  };
}

async function linkMtu(ctx: DoctorContext, dev: string): Promise<number | undefined> {
  const out = await ip(ctx, ["-j", "link", "show", "dev", dev]);
  if (out.code !== 0) return undefined;
  return (JSON.parse(out.stdout) as { mtu: number }[])[0]?.mtu;
}

async function checkMtu(ctx: DoctorContext): Promise<CheckResult> {
  if (!ctx.uplink) return { id: "vxlan-mtu", status: "skip", detail: "no uplink known" };
  const vx = await linkMtu(ctx, ctx.vxlanDevice);
  const up = await linkMtu(ctx, ctx.uplink);
  if (vx === undefined || up === undefined) {
    return {
      id: "vxlan-mtu",
      status: "skip",
      detail: `${ctx.vxlanDevice} or ${ctx.uplink} not present`,
    };
  }
  return vx + 50 <= up
    ? {
      id: "vxlan-mtu",
      status: "ok",
      detail: `${ctx.vxlanDevice} MTU ${vx} fits ${ctx.uplink} MTU ${up} (VXLAN adds 50)`,
    }
    : {
      id: "vxlan-mtu",
      status: "fail",
      detail:
        `${ctx.vxlanDevice} MTU ${vx} + 50 bytes of VXLAN exceeds ${ctx.uplink} MTU ${up}: large packets are dropped or fragmented`,
      fix: `ip link set ${ctx.vxlanDevice} mtu ${
        up - 50
      } (and restart Pods so they pick FLANNEL_MTU)`,
    };
}

async function checkChecksumOffload(ctx: DoctorContext, fix: boolean): Promise<CheckResult> {
  const id = "vxlan-csum-offload";
  const out = await run(["ethtool", "-k", ctx.vxlanDevice], {
    netns: ctx.netns || undefined,
    allowFailure: true,
  });
  if (out.code !== 0) return { id, status: "skip", detail: `${ctx.vxlanDevice} not present` };
  const on = /^\s*tx-checksum-ip-generic: on/m.test(out.stdout);
  if (!on) return { id, status: "ok", detail: `tx checksum offload is off on ${ctx.vxlanDevice}` };
  let randomFully = false;
  for (const save of ["iptables-legacy-save", "iptables-nft-save"]) {
    const nat = await run([save, "-t", "nat"], {
      netns: ctx.netns || undefined,
      allowFailure: true,
    });
    randomFully ||= nat.stdout.includes("--random-fully");
  }
  const command = `ethtool -K ${ctx.vxlanDevice} tx-checksum-ip-generic off`;
  if (!randomFully) {
    return {
      id,
      status: "ok",
      detail:
        `tx checksum offload on ${ctx.vxlanDevice}, but no MASQUERADE --random-fully rule, so the 63-second delay bug cannot trigger`,
    };
  }
  let fixed = false;
  if (fix) {
    fixed = (await run(["ethtool", "-K", ctx.vxlanDevice, "tx-checksum-ip-generic", "off"], {
      netns: ctx.netns || undefined,
      allowFailure: true,
    })).code === 0;
  }
  return {
    id,
    status: fixed ? "ok" : "warn",
    detail:
      `tx checksum offload is on for ${ctx.vxlanDevice} while MASQUERADE uses --random-fully: kernels with the VXLAN checksum bug send bad UDP checksums after SNAT, seen as 63-second delays on Service traffic`,
    fix: command,
    fixed,
  };
}

async function checkNatOnlyUplink(ctx: DoctorContext): Promise<CheckResult> {
  if (!ctx.uplink) return { id: "uplink-nat-only", status: "skip", detail: "no uplink known" };
  const out = await ip(ctx, ["-j", "-4", "addr", "show", "dev", ctx.uplink]);
  if (out.code !== 0) {
    return { id: "uplink-nat-only", status: "skip", detail: `${ctx.uplink} not present` };
  }
  const addrs = (JSON.parse(out.stdout) as { addr_info: { local: string }[] }[])
    .flatMap((l) => l.addr_info.map((a) => a.local));
  if (addrs.includes("10.0.2.15")) {
    return {
      id: "uplink-nat-only",
      status: "fail",
      detail:
        `uplink ${ctx.uplink} has 10.0.2.15, the NAT-only address every Vagrant/VirtualBox VM shares: other nodes cannot reach it, so VXLAN peers point at themselves`,
      fix: 'set "uplink": {"cidr": "<the private network>"} (or --iface) in /etc/skiff/config.json',
    };
  }
  return {
    id: "uplink-nat-only",
    status: "ok",
    detail: `uplink ${ctx.uplink} (${addrs.join(", ") || "no IPv4"})`,
  };
}

async function checkSubnetEnv(ctx: DoctorContext): Promise<CheckResult> {
  try {
    const text = await Deno.readTextFile(ctx.subnetFile);
    const missing = ["FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"]
      .filter((k) => !new RegExp(`^${k}=`, "m").test(text));
    return missing.length === 0
      ? { id: "subnet-env", status: "ok", detail: `${ctx.subnetFile} is complete` }
      : {
        id: "subnet-env",
        status: "fail",
        detail: `${ctx.subnetFile} lacks ${missing.join(", ")}`,
        fix: "restart the agent; it rewrites the file",
      };
  } catch {
    return {
      id: "subnet-env",
      status: "fail",
      detail:
        `${ctx.subnetFile} is missing: the CNI plugin answers "try again later" and no Pod can start`,
      fix: "start the skiff agent (systemctl start skiff) and check its log",
    };
  }
}

async function checkLeftovers(ctx: DoctorContext): Promise<CheckResult> {
  const pins: string[] = [];
  try {
    for await (const e of Deno.readDir(ctx.pinDir)) pins.push(e.name);
  } catch { /* no dir */ }
  if (pins.length > 0 && !ctx.agentRunning) {
    return {
      id: "leftover-state",
      status: "warn",
      detail:
        `${pins.length} pins under ${ctx.pinDir} but no agent is running: state from an older run (its programs may still steer traffic)`,
      fix: "start the agent (it adopts them) or run `skiff uninstall` to remove them",
    };
  }
  return {
    id: "leftover-state",
    status: "ok",
    detail: pins.length ? `${pins.length} pins, agent running` : "no leftover pins",
  };
}

/** Runs every check; with `fix`, applies safe known fixes. */
export async function runDoctor(
  ctx: DoctorContext,
  options: { fix?: boolean } = {},
): Promise<CheckResult[]> {
  return [
    await checkBtf(),
    await checkCgroup2(ctx),
    await checkBpffs(),
    checkTcx(),
    await checkIpvs(),
    await checkIptablesMix(ctx),
    await checkMtu(ctx),
    await checkChecksumOffload(ctx, options.fix ?? false),
    await checkNatOnlyUplink(ctx),
    await checkSubnetEnv(ctx),
    await checkLeftovers(ctx),
  ];
}
