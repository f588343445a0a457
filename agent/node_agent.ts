/**
 * The node agent's parts as daemon components, in the order they converge:
 * overlay (lease, flannel.<VNI>, peers, cni0, subnet.env) → CNI conflist → Service data plane
 * (bpf / ipvs / iptables, chosen with a reason) → node rules (masquerade, forward).
 * Each part is built from the validated config; every kernel change goes through the part's
 * own module. SIGTERM closes handles only: maps, links, routes and rules stay in place.
 * @module
 */
import type { AgentConfig } from "./config.ts";
import type { Component } from "./daemon.ts";
import type { Dataplane, SyncReport } from "./dataplane.ts";
import type { Logger } from "./log.ts";
import type { Registry } from "./metrics.ts";
import { formatCidr } from "./net/ipv4.ts";
import { createEmbeddedStore } from "./overlay/embedded_store.ts";
import { createEtcdStore } from "./overlay/etcd_store.ts";
import { type OverlayHandle, startOverlay } from "./overlay/overlay.ts";
import type { SubnetStore } from "./overlay/subnet_store.ts";
import { type ConflistOptions, writeConflist } from "./cni/conflist.ts";
import { type CniServer, serveCni } from "./cni/server.ts";
import { readServiceFile, type ServiceFileWatch, watchServiceFile } from "./lb/service_file.ts";
import { BpfDataplane } from "./lb/bpf_dataplane.ts";
import { protoName } from "./lb/lb_abi.ts";
import { summarizePinnedMap } from "./bpf/bpf_map.ts";
import { chooseDataplane, type DataplaneChoice } from "./fallback/detect.ts";
import { createIptablesDataplane } from "./fallback/iptables_dataplane.ts";
import { createIpvsDataplane } from "./fallback/ipvs_dataplane.ts";
import { detectIptablesBackend, type IptablesBackend } from "./fallback/iptables_backend.ts";
import { ensureNodeRules, removeNodeRules } from "./fallback/node_rules.ts";

/** The conflist file name the agent writes in the CNI conf dir. */
export const CONFLIST_NAME = "10-skiff.conflist";

/** The conflist skiff writes for a config (the agent and `skiff install` write the same). */
export function conflistOptions(config: AgentConfig): ConflistOptions {
  return {
    subnetFile: config.cni.subnetFile,
    dataDir: config.cni.dataDir,
    ...(config.cni.ipamDataDir && { ipamDataDir: config.cni.ipamDataDir }),
    delegate: { hairpinMode: true, isDefaultGateway: true, bridge: config.cni.bridge },
  };
}

/** Shared, late-bound facts the components hand to each other and to /statusz. */
export interface NodeState {
  store?: SubnetStore;
  overlay?: OverlayHandle;
  dataplane?: Dataplane;
  choice?: DataplaneChoice;
  iptables?: IptablesBackend;
  lastServiceSync?: SyncReport & { services: number; at: string };
  /** Set by the metrics: counts CNI requests served on the agent's socket. */
  onCniRequest?: (command: string, exitCode: number) => void;
}

/** Opens the configured subnet store. */
export async function openStore(config: AgentConfig, log: Logger): Promise<SubnetStore> {
  const store = config.store.type === "embedded"
    ? await createEmbeddedStore({ dir: config.store.dir, log })
    : createEtcdStore({ endpoints: config.store.endpoints, prefix: config.store.prefix, log });
  if (config.network) await store.initNetworkConfig(config.network);
  return store;
}

function overlayComponent(config: AgentConfig, state: NodeState, log: Logger): Component {
  return {
    name: "overlay",
    async sync() {
      if (!state.overlay) {
        state.store ??= await openStore(config, log);
        state.overlay = await startOverlay({
          store: state.store,
          netns: config.netns,
          nodeName: config.nodeName,
          uplink: config.uplink,
          stateDir: `${config.stateDir}/overlay`,
          subnetEnvPath: config.cni.subnetFile,
          ipMasq: config.ipMasq,
          bridge: config.cni.bridge,
          resyncMs: config.resyncSeconds * 1000,
          log,
        });
        const first = await state.overlay.converged;
        return { detail: { subnet: state.overlay.subnet, device: state.overlay.device, ...first } };
      }
      const report = await state.overlay.syncNow();
      return { detail: { subnet: state.overlay.subnet, ...report } };
    },
    async close() {
      await state.overlay?.close();
      await state.store?.close();
    },
  };
}

function cniComponent(config: AgentConfig, state: NodeState, log: Logger): Component {
  const path = `${config.cni.confDir}/${CONFLIST_NAME}`;
  let written = "";
  let server: CniServer | undefined;
  return {
    name: "cni",
    async sync() {
      if (config.cni.socket && !server) {
        // The plugin shim forwards to this socket: no Deno start-up per CNI call.
        server = await serveCni(config.cni.socket, {
          hostNetns: config.netns || undefined,
          onRequest: (command, exitCode) => state.onCniRequest?.(command, exitCode),
        });
        log.info("serving CNI requests", { socket: config.cni.socket });
      }
      await Deno.mkdir(config.cni.confDir, { recursive: true });
      let current = "";
      try {
        current = await Deno.readTextFile(path);
      } catch { /* missing */ }
      if (current !== "" && current === written) return { operations: 0 };
      const list = await writeConflist(path, conflistOptions(config));
      written = await Deno.readTextFile(path);
      return {
        operations: current === written ? 0 : 1,
        detail: { conflist: path, name: list.name },
      };
    },
    close: () => Promise.resolve(),
  };
}

async function makeDataplane(
  config: AgentConfig,
  state: NodeState,
  log: Logger,
): Promise<Dataplane> {
  const overlay = state.overlay!;
  const choice = await chooseDataplane(config.dataplane);
  state.choice = choice;
  log.info("data plane chosen", { kind: choice.kind, reason: choice.reason });
  const clusterCidr = formatCidr(overlay.config.network);
  const nodeIPs = [overlay.uplink.ip];
  switch (choice.kind) {
    case "bpf":
      return await BpfDataplane.install({
        pinDir: config.pinDir,
        cgroup: config.cgroupPath,
        // The config's cgroupPath is the operator's choice; the default is the cgroup2 root,
        // which a real node needs (every Pod). Labs and tests always name a child cgroup.
        allowCgroupRoot: true,
        devices: [overlay.uplink.name],
        netns: config.netns || undefined,
        nodeName: config.nodeName,
        nodeIPs,
      });
    case "ipvs":
      return await createIpvsDataplane({
        netns: config.netns || undefined,
        nodeName: config.nodeName,
        nodeAddresses: nodeIPs,
        clusterCidr,
      });
    case "iptables":
      return await createIptablesDataplane({
        netns: config.netns || undefined,
        nodeName: config.nodeName,
        clusterCidr,
        nodePortAddresses: nodeIPs,
      });
  }
}

/** Full BPF syncs happen at least this often even when the services file did not change. */
const BPF_FULL_SYNC_EVERY = 20;

async function fileStamp(path: string): Promise<string> {
  try {
    const st = await Deno.stat(path);
    return `${st.dev}:${st.ino}:${st.mtime?.getTime()}:${st.size}`;
  } catch {
    return "missing";
  }
}

function servicesComponent(config: AgentConfig, state: NodeState, log: Logger): Component {
  let watcher: ServiceFileWatch | undefined;
  let lastStamp = "";
  let unchangedSyncs = 0;
  return {
    name: "services",
    async sync() {
      state.dataplane ??= await makeDataplane(config, state, log);
      // Reading and validating a 10k-Service file costs ~0.3 s: skip it when the file is as it
      // was at the last successful sync. The BPF maps change only through this agent, so an
      // unchanged file needs a full sync only now and then; iptables/ipvs verify the kernel
      // (outside edits) on their own schedule inside sync(), so they are always called.
      const stamp = await fileStamp(config.servicesFile);
      const unchanged = stamp === lastStamp && state.lastServiceSync !== undefined;
      if (unchanged && state.dataplane.kind === "bpf" && ++unchangedSyncs < BPF_FULL_SYNC_EVERY) {
        return { operations: 0, detail: { dataplane: "bpf", unchanged: true } };
      }
      unchangedSyncs = 0;
      const snapshot = await readServiceFile(config.servicesFile);
      const report = await state.dataplane.sync(snapshot);
      lastStamp = stamp;
      state.lastServiceSync = {
        ...report,
        services: snapshot.services.length,
        at: new Date().toISOString(),
      };
      return {
        operations: report.operations,
        detail: { dataplane: state.dataplane.kind, services: snapshot.services.length },
      };
    },
    watch(trigger) {
      watcher = watchServiceFile(config.servicesFile, trigger, {
        onError: (error) =>
          log.warn("watching the services file failed; relying on resync", { error }),
      });
    },
    async close() {
      watcher?.close();
      await state.dataplane?.close();
    },
  };
}

function nodeRulesComponent(config: AgentConfig, state: NodeState): Component {
  return {
    name: "node-rules",
    async sync() {
      const overlay = state.overlay;
      if (!overlay) throw new Error("waiting for the overlay lease");
      state.iptables ??= await detectIptablesBackend({ netns: config.netns || undefined });
      if (!config.ipMasq) {
        const removed = await removeNodeRules(state.iptables);
        return { operations: removed };
      }
      const result = await ensureNodeRules(state.iptables, {
        clusterCidr: formatCidr(overlay.config.network),
        podCidr: overlay.subnet,
      });
      return { operations: result.operations, detail: { iptables: state.iptables.mode } };
    },
    close: () => Promise.resolve(),
  };
}

/** The components of a node agent, in convergence order, sharing `state`. */
export function nodeComponents(
  config: AgentConfig,
  state: NodeState,
  log: Logger,
): Component[] {
  return [
    overlayComponent(config, state, log.with({ component: "overlay" })),
    cniComponent(config, state, log.with({ component: "cni" })),
    servicesComponent(config, state, log.with({ component: "services" })),
    nodeRulesComponent(config, state),
  ];
}

/** Metrics of the node state; kernel-side values are read when Prometheus scrapes. */
export function registerNodeMetrics(
  registry: Registry,
  state: NodeState,
  config: AgentConfig,
): void {
  const services = registry.gauge("skiff_services", "Services in the desired state");
  const leases = registry.gauge("skiff_leases", "Subnet leases known to the overlay");
  const info = registry.gauge("skiff_dataplane_info", "The Service data plane in use (1)");
  const entries = registry.gauge("skiff_bpf_map_entries", "Entries in each pinned BPF map");
  const capacity = registry.gauge("skiff_bpf_map_capacity", "max_entries of each pinned BPF map");
  const backends = registry.gauge("skiff_backends", "Backends programmed in the BPF data plane");
  const conntrack = registry.gauge("skiff_conntrack_entries", "tc LB conntrack entries (lb_ct)");
  const packets = registry.counter(
    "skiff_service_packets_total",
    "Packets to a frontend (BPF per-CPU counters)",
  );
  const bytes = registry.counter(
    "skiff_service_bytes_total",
    "Bytes to a frontend (BPF per-CPU counters)",
  );
  const flows = registry.counter("skiff_service_new_flows_total", "New flows to a frontend (BPF)");
  const cni = registry.counter(
    "skiff_cni_operations_total",
    "CNI requests served on the agent socket",
  );
  state.onCniRequest = (command, exitCode) =>
    cni.inc({ command, result: exitCode === 0 ? "ok" : "error" });
  registry.onScrape(async () => {
    if (state.lastServiceSync) services.set({}, state.lastServiceSync.services);
    if (state.choice) {
      info.reset();
      info.set({ kind: state.choice.kind }, 1);
    }
    if (state.store) leases.set({}, (await state.store.listLeases()).leases.length);
  });
  registry.onScrape(() => {
    if (state.dataplane?.kind !== "bpf") return;
    entries.reset();
    capacity.reset();
    for (const entry of Deno.readDirSync(config.pinDir)) {
      if (!entry.isFile) continue;
      const summary = summarizePinnedMap(`${config.pinDir}/${entry.name}`);
      if (!summary) continue;
      capacity.set({ map: entry.name }, summary.info.maxEntries);
      if (summary.entries !== undefined) entries.set({ map: entry.name }, summary.entries);
      if (entry.name === "lb_backends" && summary.entries !== undefined) {
        backends.set({}, summary.entries);
      }
      if (entry.name === "lb_ct" && summary.entries !== undefined) {
        conntrack.set({}, summary.entries);
      }
    }
    const maps = (state.dataplane as BpfDataplane).maps;
    for (const [id, frontend] of maps.revNat.entries()) {
      const total = maps.stats.getSum(id);
      if (!total) continue;
      const labels = { frontend: `${frontend.vip}:${frontend.port}/${protoName(frontend.proto)}` };
      packets.setTotal(labels, total.packets);
      bytes.setTotal(labels, total.bytes);
      flows.setTotal(labels, total.new_flows);
    }
  });
}
