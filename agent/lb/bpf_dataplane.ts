/**
 * The eBPF Service data plane: socket LB on a cgroup, tc LB on the node's uplink(s), both
 * sharing the pinned LB maps, converged by LbReconciler. Programs are loaded and attached
 * through the Go loader (links pinned, so they outlive this process); the maps outlive it too,
 * and a restarted agent picks them up and changes only the difference.
 * @module
 */
import { REPO_ROOT } from "../bpf/build.ts";
import { type CgroupHook, LoaderClient } from "../bpf/loader_client.ts";
import type { Dataplane, SyncReport } from "../dataplane.ts";
import { type ServiceEntry, serviceKey, type ServiceSnapshot } from "./model.ts";
import { parseServiceEntry, parseSnapshot } from "./validate.ts";
import { IPPROTO, LB_MAP_NAMES, MAGLEV_M, type StatsValue } from "./lb_abi.ts";
import { frontendId } from "./map_plan.ts";
import { LbMaps } from "./lb_maps.ts";
import { LbReconciler, type LbSyncReport, sameData } from "./reconciler.ts";
import {
  purgeUdpSockets,
  SOCK_DESTROY_PROGRAM,
  SOCK_PURGE_MAP,
  type UdpPurgeReport,
} from "./udp_socket_purge.ts";

/** A sync's report with the eBPF data plane's detail. */
export interface BpfSyncReport extends LbSyncReport {
  /**
   * The connected UDP sockets destroyed because their backend was removed (socket LB only;
   * undefined when nothing needed it).
   */
  readonly udpSockets?: UdpPurgeReport;
}

/** Where and for whom the data plane runs. */
export interface BpfDataplaneOptions {
  /** bpffs pin dir of this node's instance, e.g. /sys/fs/bpf/skiff/<node>. */
  readonly pinDir: string;
  /** cgroup v2 dir whose processes get socket LB. Omit for none. */
  readonly cgroup?: string;
  /**
   * The cgroup may be a cgroup2 mount root (a production node, where every Pod must get socket
   * LB). The loader refuses a root unless told so, so a lab can never hook the whole machine.
   */
  readonly allowCgroupRoot?: boolean;
  /** Devices that get tc LB (ingress + egress), e.g. ["eth0"]. Default none. */
  readonly devices?: readonly string[];
  /**
   * Host-side devices of Pods whose cgroup has no socket LB: they get tc LB for every
   * frontend (ClusterIPs too). More can be added later with attachPodDevice().
   */
  readonly podDevices?: readonly string[];
  /** Network namespace of the devices (/run/netns/NAME); default the loader's own. */
  readonly netns?: string;
  readonly nodeName: string;
  /** Node addresses for NodePorts; the first one is the SNAT address. */
  readonly nodeIPs: readonly string[];
  /** Directory of tc_lb.o and sock_lb.o. Default <repo>/build/bpf. */
  readonly objectDir?: string;
  /** The loader binary (default build/skiff-loader). */
  readonly loaderPath?: string;
}

const CGROUP_HOOKS: readonly CgroupHook[] = ["connect4", "sendmsg4", "recvmsg4", "getpeername4"];
const LINK_PREFIX = "lb-";

function tcLinkName(where: "uplink" | "pod", direction: string, device: string): string {
  return where === "uplink"
    ? `${LINK_PREFIX}tc-${direction}-${device}`
    : `${LINK_PREFIX}tc-pod-${direction}-${device}`;
}

/** Attaches tc LB ingress + egress to a device; returns the link names (for unwinding). */
async function attachTc(
  loader: LoaderClient,
  options: BpfDataplaneOptions,
  device: string,
  where: "uplink" | "pod",
): Promise<string[]> {
  const links: string[] = [];
  try {
    for (const direction of ["ingress", "egress"] as const) {
      const link = tcLinkName(where, direction, device);
      await loader.attach({
        kind: "tc",
        pinDir: options.pinDir,
        program: direction === "ingress" && where === "pod"
          ? "tc_lb_pod_ingress"
          : `tc_lb_${direction}`,
        iface: device,
        netns: options.netns,
        direction,
        link,
      });
      links.push(link);
    }
  } catch (error) {
    for (const link of links) {
      await loader.detach({ pinDir: options.pinDir, link }).catch(() => {});
    }
    throw error;
  }
  return links;
}

/** The eBPF data plane of one node. */
export class BpfDataplane implements Dataplane {
  readonly kind = "bpf" as const;
  #closed = false;
  /** The last accepted snapshot's entries as given and as parsed. */
  #parsed = new Map<string, { input: ServiceEntry; parsed: ServiceEntry }>();
  /** What the last sync did, with the LB's detail. */
  lastReport: BpfSyncReport | undefined;

  private constructor(
    readonly options: BpfDataplaneOptions,
    readonly maps: LbMaps,
    readonly reconciler: LbReconciler,
  ) {}

  /**
   * Loads the LB programs into the pin dir (maps pinned there are reused with their contents),
   * attaches them (an existing link is swapped atomically), and opens the maps. Unwinds what
   * it attached when a step fails.
   */
  static async install(options: BpfDataplaneOptions): Promise<BpfDataplane> {
    const objects = options.objectDir ?? `${REPO_ROOT}/build/bpf`;
    await using loader = await LoaderClient.start(
      options.loaderPath ? { path: options.loaderPath } : {},
    );
    const attached: string[] = [];
    try {
      let maglevSize = MAGLEV_M;
      // sock_destroy: the iterator that destroys connected UDP sockets of removed backends
      for (const name of ["tc_lb", "sock_lb", "sock_destroy"]) {
        const loaded = await loader.load({
          object: `${objects}/${name}.o`,
          pinDir: options.pinDir,
        });
        const maglev = loaded.maps.find((m) => m.name === "lb_maglev");
        if (maglev) maglevSize = maglev.valueSize / 4; // a build may set SKIFF_MAGLEV_M
      }
      for (const hook of options.cgroup ? CGROUP_HOOKS : []) {
        const link = `${LINK_PREFIX}${hook}`;
        await loader.attach({
          kind: "cgroup",
          pinDir: options.pinDir,
          program: `sock_lb_${hook}`,
          cgroup: options.cgroup!,
          hook,
          link,
          ...(options.allowCgroupRoot && { allowCgroupRoot: true }),
        });
        attached.push(link);
      }
      for (const device of options.devices ?? []) {
        attached.push(...await attachTc(loader, options, device, "uplink"));
      }
      for (const device of options.podDevices ?? []) {
        attached.push(...await attachTc(loader, options, device, "pod"));
      }
      const maps = LbMaps.open(options.pinDir, { maglevSize });
      return new BpfDataplane(
        options,
        maps,
        new LbReconciler(maps, {
          nodeName: options.nodeName,
          nodeIPs: options.nodeIPs,
          maglevSize,
        }),
      );
    } catch (error) {
      for (const link of attached.reverse()) {
        await loader.detach({ pinDir: options.pinDir, link }).catch(() => {});
      }
      throw error;
    }
  }

  /**
   * Per-frontend counters ("vip:port/proto" → new flows, translated packets/bytes, flows
   * refused for want of a backend), summed over CPUs.
   */
  counters(): Map<string, StatsValue> {
    const out = new Map<string, StatsValue>();
    for (const [id, rn] of this.maps.revNat.readAll()) {
      const sum = this.maps.stats.getSum(id);
      if (sum) out.set(frontendId(rn.vip, rn.port, rn.proto), sum);
    }
    return out;
  }

  /** Gives a Pod's host-side device tc LB (for a Pod whose cgroup has no socket LB). */
  async attachPodDevice(device: string): Promise<void> {
    await using loader = await this.#loader();
    await attachTc(loader, this.options, device, "pod");
  }

  /** Removes tc LB from a Pod's host-side device; a device that is gone is fine. */
  async detachPodDevice(device: string): Promise<void> {
    await using loader = await this.#loader();
    for (const direction of ["ingress", "egress"]) {
      await loader.detach({
        pinDir: this.options.pinDir,
        link: tcLinkName("pod", direction, device),
      });
    }
  }

  #loader(): Promise<LoaderClient> {
    return LoaderClient.start(this.options.loaderPath ? { path: this.options.loaderPath } : {});
  }

  /**
   * Validates the snapshot (a bad one throws ServiceValidationError and changes nothing),
   * then converges the maps.
   */
  async sync(snapshot: ServiceSnapshot): Promise<SyncReport> {
    if (this.#closed) throw new Error("BpfDataplane is closed");
    const { valid, parsed } = this.#validate(snapshot);
    const report: BpfSyncReport = this.reconciler.sync(valid);
    this.lastReport = report;
    this.#parsed = parsed;
    // The maps already send no new flow to a removed backend; a connected UDP socket of a
    // hooked process would still (connect4 ran once), so destroy it: the app reconnects.
    const cgroup = this.options.cgroup;
    if (cgroup && report.removedBackends.some((b) => b.proto === IPPROTO.UDP)) {
      const udpSockets = await purgeUdpSockets(
        { pinDir: this.options.pinDir, cgroup, loaderPath: this.options.loaderPath },
        report.removedBackends,
      );
      this.lastReport = { ...report, udpSockets };
    }
    return this.lastReport;
  }

  /**
   * Validates every entry that differs from the last accepted snapshot (an unchanged one is
   * not parsed again: at 10k Services a full parse costs more than the sync). What spans
   * Services (a name or frontend used twice) is checked by the reconciler's plan, before any
   * write.
   */
  #validate(snapshot: ServiceSnapshot): {
    valid: ServiceSnapshot;
    parsed: Map<string, { input: ServiceEntry; parsed: ServiceEntry }>;
  } {
    if (!snapshot || typeof snapshot !== "object" || !Array.isArray(snapshot.services)) {
      return { valid: parseSnapshot(snapshot), parsed: new Map() };
    }
    const parsed = new Map<string, { input: ServiceEntry; parsed: ServiceEntry }>();
    const services = snapshot.services.map((input, i) => {
      const s = (input as { service?: { namespace?: unknown; name?: unknown } })?.service;
      const prior = s ? this.#parsed.get(`${s.namespace}/${s.name}`) : undefined;
      if (prior && sameData(prior.input, input)) {
        parsed.set(serviceKey(prior.parsed.service), prior);
        return prior.parsed;
      }
      const entry = parseServiceEntry(input, { path: `services[${i}]` });
      // a private copy of the input: the caller may mutate its objects in place later
      parsed.set(serviceKey(entry.service), { input: structuredClone(input), parsed: entry });
      return entry;
    });
    return { valid: { services }, parsed };
  }

  /** Detaches the LB links and removes the LB programs and maps from the pin dir. */
  async uninstall(): Promise<void> {
    await this.close();
    const dir = this.options.pinDir;
    await using loader = await this.#loader();
    const listed = await loader.list(dir);
    for (const link of listed.links) {
      if (link.name.startsWith(LINK_PREFIX)) await loader.detach({ pinDir: dir, link: link.name });
    }
    for (const p of listed.programs) {
      if (
        p.name.startsWith("tc_lb_") || p.name.startsWith("sock_lb_") ||
        p.name === SOCK_DESTROY_PROGRAM
      ) {
        await Deno.remove(p.pin).catch(() => {});
      }
    }
    for (const name of [...LB_MAP_NAMES, SOCK_PURGE_MAP]) {
      await Deno.remove(`${dir}/${name}`).catch(() => {});
    }
  }

  /** Closes the map fds; programs, links and maps stay (traffic keeps flowing). */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.maps.close();
    }
    return Promise.resolve();
  }
}
