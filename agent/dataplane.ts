/**
 * The seam between the agent and a Service data plane: bpf (socket + tc LB), iptables
 * (kube-proxy-style chains) and ipvs implement it, and one Service test suite runs against each.
 * @module
 */
import type { ServiceSnapshot } from "./lb/model.ts";

/** Which implementation carries Service traffic. */
export type DataplaneKind = "bpf" | "iptables" | "ipvs";

/** What one convergence did. */
export interface SyncReport {
  /** Wall time of the sync in milliseconds. */
  readonly durationMs: number;
  /** Kernel operations issued (map writes/deletes, rule lines, ipvs commands). */
  readonly operations: number;
  /** Services whose kernel state changed. */
  readonly changedServices: number;
}

/** A Service data plane on one node. */
export interface Dataplane {
  readonly kind: DataplaneKind;
  /** Converges the kernel to the snapshot, changing only the difference (no flush). */
  sync(snapshot: ServiceSnapshot): Promise<SyncReport>;
  /** Removes everything this data plane created (maps, pins, links, chains, ipsets). */
  uninstall(): Promise<void>;
  /** Releases handles (fds, subprocesses) but leaves the kernel state in place. */
  close(): Promise<void>;
}
