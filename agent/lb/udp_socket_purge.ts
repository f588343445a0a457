/**
 * Destroys connected UDP sockets that still point at removed backends. Socket LB translated a
 * connected socket's destination once, at connect(); without this it would keep sending to a
 * backend that is gone (the stale-UDP blackhole). bpf/sock_destroy.c's iterator aborts such
 * sockets (ECONNABORTED, then disconnected) so the application reconnects through the VIP.
 * @module
 */
import { BpfMap } from "../bpf/bpf_map.ts";
import { u8 } from "../bpf/codec.ts";
import { LoaderClient, LoaderError } from "../bpf/loader_client.ts";
import { type BackendValue, backendValue, IPPROTO } from "./lb_abi.ts";
import { cgroupNetns } from "./cgroup_netns.ts";

/** The iterator program and its map (bpf/sock_destroy.c). */
export const SOCK_DESTROY_PROGRAM = "sock_destroy_udp";
export const SOCK_PURGE_MAP = "lb_sock_purge";

/** What one purge did. */
export interface UdpPurgeReport {
  /** Sockets destroyed, one per line the iterator printed ("<local> <backend>"). */
  readonly destroyed: readonly string[];
  /** Network namespaces walked. */
  readonly namespaces: number;
  readonly durationMs: number;
  /**
   * What failed (a netns that could not be walked, the loader not starting…). The purge does
   * not throw: the maps are already converged, and a retried sync would find nothing to purge.
   */
  readonly errors: readonly string[];
}

/**
 * Destroys the connected UDP sockets of `cgroup`'s processes (any netns they are in) whose
 * destination is one of `backends` (UDP ones; others are ignored: established TCP finishes).
 * The purge map holds the backends only while the iterator runs, and is cleared even on
 * failure; failures are reported in `errors`. A socket of a process outside the cgroup that shares a netns with one inside and
 * is connected to the same backend ip:port is destroyed too (harmless: that backend is gone).
 */
export async function purgeUdpSockets(
  options: { pinDir: string; cgroup: string; loaderPath?: string },
  backends: readonly BackendValue[],
): Promise<UdpPurgeReport> {
  const started = performance.now();
  const keys = backends
    .filter((b) => b.proto === IPPROTO.UDP)
    .map((b) => ({ addr: b.addr, port: b.port, proto: IPPROTO.UDP, flags: 0 }));
  const destroyed: string[] = [];
  const errors: string[] = [];
  const report = (namespaces: number): UdpPurgeReport => ({
    destroyed,
    namespaces,
    durationMs: performance.now() - started,
    errors,
  });
  if (keys.length === 0) return report(0);
  let namespaces;
  let map;
  try {
    namespaces = await cgroupNetns(options.cgroup);
    if (namespaces.length === 0) return report(0);
    map = BpfMap.open(`${options.pinDir}/${SOCK_PURGE_MAP}`, backendValue, u8);
  } catch (error) {
    errors.push(`cannot prepare the UDP socket purge: ${(error as Error).message}`);
    return report(0);
  }
  try {
    map.updateBatch(keys.map((k) => [k, 1] as [BackendValue, number]));
    await using loader = await LoaderClient.start(
      options.loaderPath ? { path: options.loaderPath } : {},
    );
    for (const ns of namespaces) {
      try {
        const result = await loader.runIter({
          pinDir: options.pinDir,
          program: SOCK_DESTROY_PROGRAM,
          netns: ns.path,
        });
        destroyed.push(...result.output.split("\n").filter((l) => l !== ""));
        if (result.truncated) errors.push(`${ns.path}: iterator output truncated`);
      } catch (error) {
        // the only process holding that netns path exited: its sockets are gone with it
        if (error instanceof LoaderError && error.code === "not_found") continue;
        errors.push(`${ns.path}: ${(error as Error).message}`);
      }
    }
  } catch (error) {
    errors.push((error as Error).message);
  } finally {
    try {
      map.deleteBatch(keys);
    } catch (error) {
      errors.push(`cannot clear ${SOCK_PURGE_MAP}: ${(error as Error).message}`);
    } finally {
      map.close();
    }
  }
  return report(namespaces.length);
}
