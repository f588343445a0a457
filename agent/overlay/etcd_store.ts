/**
 * The etcd v3 SubnetStore in flannel's exact layout, so skiff and flanneld share one etcd:
 * `<prefix>/config` holds net-conf.json, `<prefix>/subnets/10.244.1.0-24` a lease record
 * (`{"PublicIP":…,"PublicIPv6":null,"BackendType":"vxlan","BackendData":{…}}`) bound to an
 * etcd lease whose TTL is the subnet lease's lifetime (etcd deletes the key when it expires).
 *
 * How it works: acquisition lists the leases, plans with flannel's rules, then commits with a
 * txn that only succeeds if the key does not exist (create_revision == 0) — a race is retried
 * with a fresh list. Renewal refreshes the etcd lease (keepalive; no watch event); if the key
 * vanished while etcd was away it is re-created the same way. The watch resumes from the last
 * revision after a dropped connection and falls back to a snapshot when history is compacted.
 * @module
 */
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";
import { EtcdClient, type EtcdKv } from "./etcd_client.ts";
import { type NetConfig, netConfigToJson, parseNetConfig } from "./net_config.ts";
import {
  type AcquireOptions,
  decodeLeaseRecord,
  DEFAULT_LEASE_TTL_MS,
  encodeLeaseRecord,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  LeaseLostError,
  LeaseRecordError,
  type LeaseSnapshot,
  type LeaseWatchResult,
  planAcquire,
  StoreError,
  subnetFromKey,
  subnetKey,
  type SubnetStore,
  validateLeaseAttrs,
} from "./subnet_store.ts";
import { sleep } from "./sleep.ts";

/** flannel's default key prefix. */
export const DEFAULT_ETCD_PREFIX = "/coreos.com/network";

/** Options for {@linkcode createEtcdStore}. */
export interface EtcdStoreOptions {
  /** http://host:port client URLs. */
  readonly endpoints: readonly string[];
  /** Key prefix (default /coreos.com/network, flannel's). */
  readonly prefix?: string;
  /** Lease lifetime (default 24 h; rounded up to whole seconds for etcd). */
  readonly ttlMs?: number;
  /** Timeout of one etcd call (default 5 s). */
  readonly timeoutMs?: number;
  readonly log?: Logger;
}

const RACE_RETRIES = 10;

/** Creates an etcd store (no connection is made until the first call). */
export function createEtcdStore(options: EtcdStoreOptions): SubnetStore {
  return new EtcdStore(options);
}

class EtcdStore implements SubnetStore {
  readonly kind = "etcd" as const;
  readonly #client: EtcdClient;
  readonly #prefix: string;
  readonly #ttlSeconds: number;
  readonly #log: Logger;

  constructor(options: EtcdStoreOptions) {
    this.#client = new EtcdClient({ endpoints: options.endpoints, timeoutMs: options.timeoutMs });
    this.#prefix = (options.prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, "");
    this.#ttlSeconds = Math.max(1, Math.ceil((options.ttlMs ?? DEFAULT_LEASE_TTL_MS) / 1000));
    this.#log = options.log ?? silentLogger;
  }

  get #subnets(): string {
    return `${this.#prefix}/subnets/`;
  }

  #key(subnet: string): string {
    return `${this.#subnets}${subnetKey(subnet)}`;
  }

  /** A lease from a kv, or undefined (logged) when the record cannot be read. */
  #decode(kv: EtcdKv, expiresAt?: number): Lease | undefined {
    try {
      const subnet = subnetFromKey(kv.key);
      if (!subnet) throw new LeaseRecordError(kv.key, "key is not a subnet");
      const attrs = decodeLeaseRecord(kv.key, kv.value);
      return { subnet, attrs, ...(expiresAt !== undefined && { expiresAt }) };
    } catch (error) {
      this.#log.warn("skipping a lease record", { error: (error as Error).message });
      return undefined;
    }
  }

  async getNetworkConfig(): Promise<NetConfig> {
    const kv = await this.#client.get(`${this.#prefix}/config`);
    if (!kv) throw new StoreError(`no network config at ${this.#prefix}/config in etcd`);
    return parseNetConfig(kv.value);
  }

  async initNetworkConfig(raw: unknown): Promise<NetConfig> {
    const config = parseNetConfig(raw);
    const key = `${this.#prefix}/config`;
    await this.#client.txn(
      [{ key, target: "CREATE", result: "EQUAL", createRevision: 0 }],
      [{ put: { key, value: JSON.stringify(netConfigToJson(config)) } }],
    );
    return await this.getNetworkConfig();
  }

  async #list(): Promise<{ kvs: EtcdKv[]; leases: Lease[]; revision: number }> {
    const { kvs, revision } = await this.#client.range(this.#subnets);
    const leases = kvs.flatMap((kv) => this.#decode(kv) ?? []);
    return { kvs, leases, revision };
  }

  /** Puts the record under a fresh etcd lease if the key is absent; false when taken. */
  async #create(key: string, value: string): Promise<number | undefined> {
    const id = await this.#client.grant(this.#ttlSeconds);
    const ok = await this.#client.txn(
      [{ key, target: "CREATE", result: "EQUAL", createRevision: 0 }],
      [{ put: { key, value, lease: id } }],
    ).catch(async (error) => {
      await this.#client.revoke(id).catch(() => {});
      throw error;
    });
    if (!ok) {
      await this.#client.revoke(id).catch(() => {});
      return undefined;
    }
    return Date.now() + this.#ttlSeconds * 1000;
  }

  async acquireLease(attrs: LeaseAttrs, options: AcquireOptions = {}): Promise<Lease> {
    validateLeaseAttrs(attrs);
    const config = await this.getNetworkConfig();
    const value = encodeLeaseRecord(attrs);
    for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
      const { kvs, leases } = await this.#list();
      const occupied = kvs.flatMap((kv) => subnetFromKey(kv.key) ?? [])
        .filter((s) => !leases.some((l) => l.subnet === s));
      const plan = planAcquire(config, leases, attrs, { ...options, occupied });
      const key = this.#key(plan.subnet);
      if (plan.kind === "reuse") {
        const kv = kvs.find((k) => k.key === key)!;
        if (kv.value === value && kv.lease !== "0") {
          const ttl = await this.#client.keepAlive(kv.lease);
          if (ttl > 0) return { subnet: plan.subnet, attrs, expiresAt: Date.now() + ttl * 1000 };
        }
        // New attrs (e.g. another MAC) or no etcd lease: replace the value if nobody else did.
        const id = await this.#client.grant(this.#ttlSeconds);
        const ok = await this.#client.txn(
          [{ key, target: "VALUE", result: "EQUAL", value: kv.value }],
          [{ put: { key, value, lease: id } }],
        );
        if (!ok) {
          await this.#client.revoke(id).catch(() => {});
          continue;
        }
        if (kv.lease !== "0" && kv.lease !== id) {
          await this.#client.revoke(kv.lease).catch(() => {});
        }
        return { subnet: plan.subnet, attrs, expiresAt: Date.now() + this.#ttlSeconds * 1000 };
      }
      if (plan.drop) {
        this.#log.info("dropping our lease that no longer fits the network config", {
          subnet: plan.drop,
        });
        await this.#client.delete(this.#key(plan.drop));
      }
      const expiresAt = await this.#create(key, value);
      if (expiresAt !== undefined) return { subnet: plan.subnet, attrs, expiresAt };
      this.#log.debug("subnet taken concurrently, retrying", { subnet: plan.subnet, attempt });
    }
    throw new StoreError(`could not acquire a subnet after ${RACE_RETRIES} races`);
  }

  async renewLease(lease: Lease): Promise<Lease> {
    const key = this.#key(lease.subnet);
    const value = encodeLeaseRecord(lease.attrs);
    const kv = await this.#client.get(key);
    if (kv) {
      const current = this.#decode(kv);
      if (current && current.attrs.publicIp !== lease.attrs.publicIp) {
        throw new LeaseLostError(lease.subnet, `node ${current.attrs.publicIp} holds it now`);
      }
      if (kv.value === value && kv.lease !== "0") {
        const ttl = await this.#client.keepAlive(kv.lease);
        if (ttl > 0) return { ...lease, expiresAt: Date.now() + ttl * 1000 };
      }
      await this.#client.delete(key); // ours, but stale value or lease: write it afresh
    }
    const expiresAt = await this.#create(key, value);
    if (expiresAt === undefined) {
      throw new LeaseLostError(lease.subnet, "another node took it while it was missing");
    }
    if (!kv) this.#log.warn("lease had vanished from etcd; re-created", { subnet: lease.subnet });
    return { ...lease, expiresAt };
  }

  async releaseLease(subnet: string): Promise<void> {
    const kv = await this.#client.get(this.#key(subnet));
    if (!kv) return;
    if (kv.lease !== "0") await this.#client.revoke(kv.lease);
    await this.#client.delete(this.#key(subnet));
  }

  async listLeases(): Promise<LeaseSnapshot> {
    const { kvs, revision } = await this.#client.range(this.#subnets);
    const leases: Lease[] = [];
    // TTLs are one call per lease (etcd's range does not return them); a few at a time.
    for (let i = 0; i < kvs.length; i += 16) {
      const batch = await Promise.all(
        kvs.slice(i, i + 16).map(async (kv) => {
          const ttl = kv.lease === "0" ? -1 : await this.#client.timeToLive(kv.lease);
          return this.#decode(kv, ttl > 0 ? Date.now() + ttl * 1000 : undefined);
        }),
      );
      for (const lease of batch) if (lease) leases.push(lease);
    }
    return { leases, cursor: String(revision) };
  }

  async *watchLeases(cursor: string, signal: AbortSignal): AsyncIterable<LeaseWatchResult> {
    let rev = Number(cursor);
    if (!Number.isInteger(rev) || rev < 0) throw new TypeError(`bad watch cursor "${cursor}"`);
    let backoff = 100;
    while (!signal.aborted) {
      try {
        for await (const msg of this.#client.watch(this.#subnets, rev + 1, signal)) {
          backoff = 100;
          if (msg.kind === "compacted") {
            this.#log.warn("etcd history compacted past our cursor; taking a snapshot", {
              cursor: rev,
              compactRevision: msg.compactRevision,
            });
            const snap = await this.listLeases();
            rev = Number(snap.cursor);
            yield { kind: "snapshot", leases: snap.leases, cursor: snap.cursor };
            break;
          }
          if (msg.kind !== "events") continue;
          const events: LeaseEvent[] = [];
          for (const e of msg.events) {
            const subnet = subnetFromKey(e.kv.key);
            if (!subnet) continue;
            if (e.type === "DELETE") {
              events.push({ type: "removed", subnet });
              continue;
            }
            const lease = this.#decode(e.kv);
            const type = e.kv.createRevision === e.kv.modRevision ? "added" : "changed";
            // An unreadable record is skipped; peers drop what they had for that subnet.
            events.push(lease ? { type, lease } : { type: "removed", subnet });
          }
          rev = Math.max(rev, ...msg.events.map((e) => e.kv.modRevision));
          if (events.length > 0) yield { kind: "events", events, cursor: String(rev) };
        }
      } catch (error) {
        if (signal.aborted) return;
        this.#log.warn("etcd watch dropped; resuming", {
          fromRevision: rev + 1,
          error: (error as Error).message,
          retryMs: backoff,
        });
      }
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 2000);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
