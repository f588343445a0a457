/**
 * The node side of the overlay (flannel's vxlan backend): lease a subnet, converge the local
 * devices (flannel.<VNI>, cni0, subnet.env) and keep every peer's neighbour/FDB/route entries
 * in step with the store, inside the node's netns.
 *
 * How it works: everything is validated before the kernel is touched (config, uplink, MTU).
 * Then the lease is acquired with the MAC and subnet remembered in the state dir, the local
 * devices are ensured, and the peers are converged from a list of leases; a watch from that
 * list's cursor feeds later changes. Each sync reads what the kernel has and applies only the
 * difference (restarts flush nothing). A timer renews the lease before it expires; a periodic
 * resync repairs devices or entries changed under the agent. close() stops all of that and
 * leaves the kernel as it is; uninstall() also releases the lease and removes the devices.
 * @module
 */
import type { Logger } from "../log.ts";
import { cidrHost, formatCidr, formatIpv4, parseCidr } from "../net/ipv4.ts";
import { type NetConfig, NetConfigError, netConfigToJson, parseNetConfig } from "./net_config.ts";
import { desiredEntries, type PeerContext, type PeerEntries } from "./peer_diff.ts";
import { type PeerSyncReport, syncPeers } from "./peer_apply.ts";
import { readSubnetEnv, writeSubnetEnv } from "./subnet_env.ts";
import {
  type Lease,
  type LeaseAttrs,
  LeaseLostError,
  randomVtepMac,
  type SubnetStore,
} from "./subnet_store.ts";
import { detectUplink, type Uplink, type UplinkSelector } from "./uplink.ts";
import { deleteLink, ensureBridge, ensureVxlan } from "./vxlan.ts";
import { sleep } from "./sleep.ts";
import { readLink } from "../net/iproute.ts";
import type { Cidr } from "../net/ipv4.ts";

/** Options for {@linkcode startOverlay}. */
export interface OverlayOptions {
  readonly store: SubnetStore;
  /** The node's network namespace (/run/netns/X); "" or absent = the agent's own. */
  readonly netns?: string;
  readonly nodeName: string;
  /** Uplink choice (default: from the default route). */
  readonly uplink?: UplinkSelector;
  /** Where the VTEP MAC and last subnet are kept (created if missing). */
  readonly stateDir: string;
  /** flannel's subnet.env path, e.g. /run/flannel/subnet.env. */
  readonly subnetEnvPath: string;
  /** FLANNEL_IPMASQ (default true). */
  readonly ipMasq?: boolean;
  /** Pod bridge name (default "cni0"); null = do not manage a bridge. */
  readonly bridge?: string | null;
  /** Other prefixes the pod network must not overlap (e.g. the Service CIDR). */
  readonly reserved?: readonly { readonly cidr: Cidr; readonly what: string }[];
  /** Periodic full resync (default 30 s). */
  readonly resyncMs?: number;
  readonly log: Logger;
}

/** A running overlay on one node. */
export interface OverlayHandle {
  /** Our subnet, "10.244.1.0/24" (may change only if the lease was lost and re-acquired). */
  readonly subnet: string;
  readonly lease: Lease;
  /** flannel.<VNI>. */
  readonly device: string;
  readonly uplink: Uplink;
  readonly config: NetConfig;
  readonly mtu: number;
  /** Resolves after the first convergence with the store's leases. */
  readonly converged: Promise<PeerSyncReport>;
  /** The last peer sync. */
  readonly lastSync: PeerSyncReport | undefined;
  /** Forces a full sync now (devices and peers) and resolves when it is done. */
  syncNow(): Promise<PeerSyncReport>;
  /** Renews the lease now. */
  renewNow(): Promise<Lease>;
  /** Stops watching and timers; the kernel keeps its state and the lease stays. */
  close(): Promise<void>;
  /** close(), then release the lease and remove flannel.<VNI>, the bridge and subnet.env. */
  uninstall(): Promise<void>;
}

interface OverlayState {
  vtepMac: string;
  subnet?: string;
}

async function readState(path: string): Promise<OverlayState | undefined> {
  try {
    const s = JSON.parse(await Deno.readTextFile(path));
    if (typeof s.vtepMac === "string" && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(s.vtepMac)) {
      return { vtepMac: s.vtepMac, subnet: typeof s.subnet === "string" ? s.subnet : undefined };
    }
  } catch { /* missing or unreadable: start afresh */ }
  return undefined;
}

async function writeState(path: string, state: OverlayState): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(state));
  await Deno.rename(`${path}.tmp`, path);
}

/** Validates, leases, converges; resolves once the local devices are in place. */
export async function startOverlay(options: OverlayOptions): Promise<OverlayHandle> {
  const netns = options.netns ?? "";
  const log = options.log.with({ node: options.nodeName });
  const { store } = options;

  // 1. Everything that can be refused is checked before the kernel or the store changes.
  const uplink = await detectUplink(options.uplink ?? {}, netns);
  log.info("uplink chosen", { iface: uplink.name, ip: uplink.ip, reason: uplink.reason });
  const stored = await store.getNetworkConfig();
  const config = parseNetConfig(netConfigToJson(stored), {
    reserved: [
      { cidr: uplink.cidr, what: `the uplink ${uplink.name}'s subnet` },
      ...(options.reserved ?? []),
    ],
  });
  const maxMtu = uplink.mtu - 50;
  const mtu = config.backend.mtu ?? maxMtu;
  if (mtu > maxMtu) {
    throw new NetConfigError(
      "Backend.MTU",
      `${mtu} exceeds uplink ${uplink.name} MTU ${uplink.mtu} − 50 VXLAN overhead = ${maxMtu}`,
    );
  }
  const device = `flannel.${config.backend.vni}`;
  const bridge = options.bridge === undefined ? "cni0" : options.bridge;

  // 2. The VTEP MAC survives restarts: state dir, else the device that is there, else new.
  await Deno.mkdir(options.stateDir, { recursive: true });
  const statePath = `${options.stateDir}/overlay.json`;
  const state = await readState(statePath);
  const existing = await readLink(device, netns);
  const vtepMac = state?.vtepMac ?? existing?.address?.toLowerCase() ?? randomVtepMac();
  const previousSubnet = state?.subnet ?? (await readSubnetEnv(options.subnetEnvPath))?.subnet;
  const attrs: LeaseAttrs = {
    publicIp: uplink.ip,
    backendType: "vxlan",
    vni: config.backend.vni,
    vtepMac,
  };
  await writeState(statePath, { vtepMac, subnet: previousSubnet });

  let lease = await store.acquireLease(attrs, previousSubnet ? { previousSubnet } : {});
  log.info("lease acquired", { subnet: lease.subnet, vtepMac, previous: previousSubnet ?? null });
  await writeState(statePath, { vtepMac, subnet: lease.subnet });

  const ctx = (): PeerContext => ({
    device,
    vni: config.backend.vni,
    ownSubnet: lease.subnet,
    network: config.network,
    uplink: { name: uplink.name, cidr: uplink.cidr, ip: uplink.ip },
    directRouting: config.backend.directRouting,
  });

  async function ensureLocal(): Promise<void> {
    const subnet = parseCidr(lease.subnet);
    const report = await ensureVxlan(
      {
        name: device,
        vni: config.backend.vni,
        port: config.backend.port,
        localIp: uplink.ip,
        uplink: uplink.name,
        mtu,
        mac: vtepMac,
        address: `${formatIpv4(subnet.base)}/32`,
      },
      netns,
      (why) => log.warn("recreating incompatible VXLAN device", { device, why }),
    );
    if (report.commands.length > 0) {
      log.info(report.created ? "VXLAN device created" : "VXLAN device repaired", {
        device,
        commands: report.commands,
      });
    }
    if (bridge) {
      const b = await ensureBridge({
        name: bridge,
        address: `${formatIpv4(cidrHost(subnet, 1))}/${subnet.prefix}`,
        mtu,
      }, netns);
      if (b.commands.length > 0) log.info("bridge converged", { bridge, commands: b.commands });
    }
    await writeSubnetEnv(options.subnetEnvPath, {
      network: formatCidr(config.network),
      subnet: lease.subnet,
      mtu,
      ipMasq: options.ipMasq ?? true,
    });
  }

  // 3. Local devices; a failure here releases nothing (a retry converges), but is reported.
  await ensureLocal();

  const leases = new Map<string, Lease>();
  const abort = new AbortController();
  let lastSync: PeerSyncReport | undefined;
  let applied: PeerEntries | undefined;
  const warned = new Set<string>();
  let running: Promise<PeerSyncReport> | undefined;
  let dirty = false;
  let wantLocal = false;
  let wantRead = false;
  type Timer = ReturnType<typeof setTimeout>;
  let retryTimer: Timer | undefined;
  let resyncTimer: Timer | undefined;
  let renewTimer: Timer | undefined;
  let closed = false;

  async function syncOnce(): Promise<PeerSyncReport> {
    const full = wantLocal || wantRead;
    wantRead = false;
    if (wantLocal) {
      wantLocal = false;
      await ensureLocal();
    }
    const { entries, skipped } = desiredEntries(ctx(), [...leases.values()]);
    for (const s of skipped) {
      // Said once per lease and reason, not on every sync.
      const key = `${s.subnet} ${s.reason}`;
      if (warned.has(key)) continue;
      warned.add(key);
      log.warn("lease not programmed", { subnet: s.subnet, why: s.reason });
    }
    // A full sync (start, resync, after a failure) reads the kernel; an event-driven one
    // trusts what the last successful sync left.
    const known = full ? undefined : applied;
    applied = undefined;
    const report = await syncPeers(ctx(), entries, netns, known);
    applied = entries;
    lastSync = report;
    if (report.operations > 0) {
      log.info("peers converged", {
        peers: report.peers,
        operations: report.operations,
        ms: Math.round(report.durationMs * 10) / 10,
      });
    }
    return report;
  }

  /** Queues a sync: `local` also converges the devices, `read` re-reads the kernel's peers. */
  function requestSync(local = false, read = local): Promise<PeerSyncReport> {
    dirty = true;
    wantLocal ||= local;
    wantRead ||= read;
    if (running) return running.then(() => running ?? requestSync(false));
    running = (async () => {
      let report: PeerSyncReport | undefined;
      try {
        while (dirty && !closed) {
          dirty = false;
          try {
            report = await syncOnce();
          } catch (error) {
            log.error("sync failed; retrying with a full resync", { error });
            wantLocal = true;
            clearTimeout(retryTimer);
            if (!closed) retryTimer = setTimeout(() => requestSync(true).catch(() => {}), 1000);
            throw error;
          }
        }
        return report ?? lastSync ?? { operations: 0, durationMs: 0, peers: 0 };
      } finally {
        running = undefined;
      }
    })();
    return running;
  }

  function scheduleRenew(): void {
    clearTimeout(renewTimer);
    if (closed || lease.expiresAt === undefined) return;
    const left = lease.expiresAt - Date.now();
    const margin = Math.min(3600e3, left / 2);
    renewTimer = setTimeout(() => renew().catch(() => {}), Math.max(0, left - margin));
  }

  async function renew(): Promise<Lease> {
    try {
      try {
        lease = await store.renewLease(lease);
      } catch (error) {
        if (!(error instanceof LeaseLostError)) throw error;
        log.error("lease lost; acquiring again", { error });
        const before = lease.subnet;
        lease = await store.acquireLease(attrs, { previousSubnet: before });
        await writeState(statePath, { vtepMac, subnet: lease.subnet });
        if (lease.subnet !== before) {
          log.error("subnet changed after losing the lease; pods must be recreated", {
            from: before,
            to: lease.subnet,
          });
        }
        requestSync(true).catch(() => {});
      }
      log.debug("lease renewed", { subnet: lease.subnet, expiresAt: lease.expiresAt });
      scheduleRenew();
      return lease;
    } catch (error) {
      // The store is unreachable (or re-acquiring failed): retry well before expiry.
      const left = (lease.expiresAt ?? Date.now()) - Date.now();
      const retry = Math.min(60_000, Math.max(500, left / 8));
      log.warn("lease renewal failed; retrying", { error, retryMs: Math.round(retry) });
      clearTimeout(renewTimer);
      if (!closed) renewTimer = setTimeout(() => renew().catch(() => {}), retry);
      throw error;
    }
  }

  async function watchLoop(cursor: string): Promise<void> {
    while (!abort.signal.aborted) {
      try {
        for await (const result of store.watchLeases(cursor, abort.signal)) {
          cursor = result.cursor;
          if (result.kind === "snapshot") {
            leases.clear();
            for (const l of result.leases) leases.set(l.subnet, l);
          } else {
            for (const e of result.events) {
              if (e.type === "removed") {
                leases.delete(e.subnet);
                if (e.subnet === lease.subnet) {
                  log.warn("our lease was removed from the store; renewing", { subnet: e.subnet });
                  renew().catch(() => {});
                }
              } else {
                leases.set(e.lease.subnet, e.lease);
              }
            }
          }
          requestSync().catch(() => {});
        }
      } catch (error) {
        if (abort.signal.aborted) return;
        log.warn("lease watch failed; listing again", { error });
        await sleep(1000, abort.signal);
        try {
          const snap = await store.listLeases();
          leases.clear();
          for (const l of snap.leases) leases.set(l.subnet, l);
          cursor = snap.cursor;
          requestSync().catch(() => {});
        } catch { /* next round */ }
      }
    }
  }

  // 4. Peers from a list, then changes from its cursor.
  const snapshot = await store.listLeases();
  for (const l of snapshot.leases) leases.set(l.subnet, l);
  const converged = requestSync(false, true);
  const watching = watchLoop(snapshot.cursor);
  scheduleRenew();
  const resyncMs = options.resyncMs ?? 30_000;
  const tick = () => {
    if (closed) return;
    requestSync(true).catch(() => {}).finally(() => {
      if (!closed) resyncTimer = setTimeout(tick, resyncMs);
    });
  };
  resyncTimer = setTimeout(tick, resyncMs);
  converged.catch(() => {});

  const close = async () => {
    if (closed) return;
    closed = true;
    abort.abort();
    clearTimeout(retryTimer);
    clearTimeout(resyncTimer);
    clearTimeout(renewTimer);
    await watching;
    await running?.catch(() => {});
  };

  return {
    get subnet() {
      return lease.subnet;
    },
    get lease() {
      return lease;
    },
    device,
    uplink,
    config,
    mtu,
    converged,
    get lastSync() {
      return lastSync;
    },
    syncNow: () => requestSync(true),
    renewNow: renew,
    close,
    async uninstall() {
      await close();
      await store.releaseLease(lease.subnet);
      await deleteLink(device, netns);
      if (bridge) await deleteLink(bridge, netns);
      await Deno.remove(options.subnetEnvPath).catch(() => {});
      log.info("overlay uninstalled", { subnet: lease.subnet });
    },
  };
}
