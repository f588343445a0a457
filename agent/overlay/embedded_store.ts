/**
 * The embedded SubnetStore: files under a state dir shared by every agent on one host (the
 * lab's default). `config.json` holds net-conf.json; `leases.json` holds the leases (values in
 * flannel's record format), a revision and the last events; `lock` is flock'ed around every
 * change, so agents in several processes allocate atomically.
 *
 * How it works: a change takes the lock, drops expired leases (as "removed" events), applies
 * itself, bumps the revision and renames a new leases.json into place, so readers never see a
 * half-written file. Watchers poll the file's identity and read events after their cursor; a
 * cursor older than the kept history gets a snapshot instead.
 * @module
 */
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";
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
  sameAttrs,
  StoreError,
  subnetFromKey,
  subnetKey,
  type SubnetStore,
  validateLeaseAttrs,
} from "./subnet_store.ts";
import { sleep } from "./sleep.ts";

/** Options for {@linkcode createEmbeddedStore}. */
export interface EmbeddedStoreOptions {
  /** Directory shared by the agents (created if missing). */
  readonly dir: string;
  /** Lease lifetime (default 24 h). */
  readonly ttlMs?: number;
  /** How often watchers look for changes (default 200 ms). */
  readonly pollMs?: number;
  /** Events kept for watchers that resume (default 1000). */
  readonly history?: number;
  readonly log?: Logger;
}

interface StoredLease {
  /** flannel's lease record JSON text. */
  value: string;
  expiresAt: number;
}

interface StoredEvent {
  rev: number;
  type: "added" | "changed" | "removed";
  key: string;
  value?: string;
  expiresAt?: number;
}

interface State {
  revision: number;
  leases: Record<string, StoredLease>;
  events: StoredEvent[];
}

const EMPTY: State = { revision: 0, leases: {}, events: [] };

/** Opens (and creates) an embedded store under `options.dir`. */
export async function createEmbeddedStore(options: EmbeddedStoreOptions): Promise<SubnetStore> {
  await Deno.mkdir(options.dir, { recursive: true });
  return new EmbeddedStore(options);
}

class EmbeddedStore implements SubnetStore {
  readonly kind = "embedded" as const;
  readonly #dir: string;
  readonly #ttl: number;
  readonly #poll: number;
  readonly #history: number;
  readonly #log: Logger;

  constructor(options: EmbeddedStoreOptions) {
    this.#dir = options.dir;
    this.#ttl = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.#poll = options.pollMs ?? 200;
    this.#history = options.history ?? 1000;
    this.#log = options.log ?? silentLogger;
  }

  get #statePath(): string {
    return `${this.#dir}/leases.json`;
  }

  async #withLock<T>(fn: () => Promise<T>): Promise<T> {
    const file = await Deno.open(`${this.#dir}/lock`, { create: true, write: true });
    try {
      // flock is per open file description: it excludes other processes and other stores
      // in this process alike.
      await file.lock(true);
      return await fn();
    } finally {
      file.close();
    }
  }

  async #read(): Promise<State> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#statePath);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return structuredClone(EMPTY);
      throw error;
    }
    try {
      const state = JSON.parse(text) as State;
      if (typeof state.revision !== "number" || typeof state.leases !== "object") throw 0;
      state.events ??= [];
      return state;
    } catch {
      throw new StoreError(`${this.#statePath} is corrupt (not the store's JSON)`);
    }
  }

  async #write(state: State): Promise<void> {
    if (state.events.length > this.#history) {
      state.events = state.events.slice(-this.#history);
    }
    const tmp = `${this.#statePath}.tmp${Deno.pid}`;
    await Deno.writeTextFile(tmp, JSON.stringify(state));
    await Deno.rename(tmp, this.#statePath);
  }

  #record(state: State, type: StoredEvent["type"], key: string, lease?: StoredLease): void {
    state.revision++;
    state.events.push({ rev: state.revision, type, key, ...lease });
    if (lease) state.leases[key] = lease;
    else delete state.leases[key];
  }

  #sweep(state: State, now: number): boolean {
    let changed = false;
    for (const [key, lease] of Object.entries(state.leases)) {
      if (lease.expiresAt <= now) {
        this.#log.info("lease expired", { subnet: subnetFromKey(key) ?? key });
        this.#record(state, "removed", key);
        changed = true;
      }
    }
    return changed;
  }

  /** Runs a change under the lock; `fn` returns whether it changed the state. */
  #change<T>(fn: (state: State) => { result: T; changed: boolean }): Promise<T> {
    return this.#withLock(async () => {
      const state = await this.#read();
      const swept = this.#sweep(state, Date.now());
      const { result, changed } = fn(state);
      if (changed || swept) await this.#write(state);
      return result;
    });
  }

  #decode(key: string, stored: StoredLease): Lease | undefined {
    const subnet = subnetFromKey(key);
    try {
      if (!subnet) throw new LeaseRecordError(key, "key is not a subnet");
      return { subnet, attrs: decodeLeaseRecord(key, stored.value), expiresAt: stored.expiresAt };
    } catch (error) {
      this.#log.warn("skipping a lease record", { error: (error as Error).message });
      return undefined;
    }
  }

  #leases(state: State): Lease[] {
    return Object.entries(state.leases).flatMap(([k, v]) => this.#decode(k, v) ?? []);
  }

  async getNetworkConfig(): Promise<NetConfig> {
    let text: string;
    try {
      text = await Deno.readTextFile(`${this.#dir}/config.json`);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new StoreError(`no network config in ${this.#dir}/config.json`);
      }
      throw error;
    }
    return parseNetConfig(text);
  }

  async initNetworkConfig(raw: unknown): Promise<NetConfig> {
    const config = parseNetConfig(raw);
    return await this.#withLock(async () => {
      try {
        return await this.getNetworkConfig();
      } catch (error) {
        if (!(error instanceof StoreError)) throw error;
      }
      const path = `${this.#dir}/config.json`;
      await Deno.writeTextFile(`${path}.tmp${Deno.pid}`, JSON.stringify(netConfigToJson(config)));
      await Deno.rename(`${path}.tmp${Deno.pid}`, path);
      return config;
    });
  }

  async acquireLease(attrs: LeaseAttrs, options: AcquireOptions = {}): Promise<Lease> {
    validateLeaseAttrs(attrs);
    const config = await this.getNetworkConfig();
    return this.#change((state) => {
      const leases = this.#leases(state);
      const occupied = Object.keys(state.leases).flatMap((k) => subnetFromKey(k) ?? [])
        .filter((s) => !leases.some((l) => l.subnet === s));
      const plan = planAcquire(config, leases, attrs, { ...options, occupied });
      const expiresAt = Date.now() + this.#ttl;
      const stored = { value: encodeLeaseRecord(attrs), expiresAt };
      if (plan.kind === "create" && plan.drop) this.#record(state, "removed", subnetKey(plan.drop));
      const key = subnetKey(plan.subnet);
      const old = state.leases[key];
      if (plan.kind === "reuse" && old && old.value === stored.value) {
        old.expiresAt = expiresAt; // a renewal: no event, watchers need not hear of it
      } else {
        this.#record(state, old ? "changed" : "added", key, stored);
      }
      return { result: { subnet: plan.subnet, attrs, expiresAt }, changed: true };
    });
  }

  renewLease(lease: Lease): Promise<Lease> {
    return this.#change((state) => {
      const key = subnetKey(lease.subnet);
      const stored = state.leases[key];
      const expiresAt = Date.now() + this.#ttl;
      if (!stored) {
        // Expired or released meanwhile but still free: take it again (as etcd's store does).
        this.#log.warn("lease had vanished; re-created", { subnet: lease.subnet });
        this.#record(state, "added", key, { value: encodeLeaseRecord(lease.attrs), expiresAt });
        return { result: { ...lease, expiresAt }, changed: true };
      }
      const current = this.#decode(key, stored);
      if (current && current.attrs.publicIp !== lease.attrs.publicIp) {
        throw new LeaseLostError(lease.subnet, `node ${current.attrs.publicIp} holds it now`);
      }
      if (current && sameAttrs(current.attrs, lease.attrs)) {
        stored.expiresAt = expiresAt;
      } else {
        this.#record(state, "changed", key, { value: encodeLeaseRecord(lease.attrs), expiresAt });
      }
      return { result: { ...lease, expiresAt }, changed: true };
    });
  }

  releaseLease(subnet: string): Promise<void> {
    return this.#change((state) => {
      const key = subnetKey(subnet);
      if (!(key in state.leases)) return { result: undefined, changed: false };
      this.#record(state, "removed", key);
      return { result: undefined, changed: true };
    });
  }

  listLeases(): Promise<LeaseSnapshot> {
    return this.#change((state) => ({
      result: { leases: this.#leases(state), cursor: String(state.revision) },
      changed: false,
    }));
  }

  async *watchLeases(cursor: string, signal: AbortSignal): AsyncIterable<LeaseWatchResult> {
    let rev = Number(cursor);
    if (!Number.isInteger(rev) || rev < 0) throw new TypeError(`bad watch cursor "${cursor}"`);
    let seen = "";
    while (!signal.aborted) {
      const identity = await this.#identity();
      if (identity !== seen) {
        seen = identity;
        const state = await this.#read();
        if (Object.values(state.leases).some((l) => l.expiresAt <= Date.now())) {
          await this.#change(() => ({ result: undefined, changed: false }));
          continue;
        }
        if (state.revision > rev) {
          const oldest = state.events[0]?.rev ?? state.revision + 1;
          if (oldest > rev + 1) {
            yield { kind: "snapshot", leases: this.#leases(state), cursor: String(state.revision) };
          } else {
            const events = state.events.filter((e) => e.rev > rev).flatMap((e) =>
              this.#event(e) ?? []
            );
            if (events.length > 0) {
              yield { kind: "events", events, cursor: String(state.revision) };
            }
          }
          rev = state.revision;
        }
      } else if (await this.#anyExpired()) {
        seen = "";
        continue;
      }
      await sleep(this.#poll, signal);
    }
  }

  #expiryCache = { identity: "", next: Infinity };

  async #anyExpired(): Promise<boolean> {
    const identity = await this.#identity();
    if (identity !== this.#expiryCache.identity) {
      const state = await this.#read();
      this.#expiryCache = {
        identity,
        next: Math.min(Infinity, ...Object.values(state.leases).map((l) => l.expiresAt)),
      };
    }
    return this.#expiryCache.next <= Date.now();
  }

  #event(e: StoredEvent): LeaseEvent | undefined {
    const subnet = subnetFromKey(e.key);
    if (!subnet) return undefined;
    if (e.type === "removed") return { type: "removed", subnet };
    // A record that cannot be read is skipped (logged); peers drop what they had for it.
    const lease = this.#decode(e.key, { value: e.value ?? "", expiresAt: e.expiresAt ?? 0 });
    return lease ? { type: e.type, lease } : { type: "removed", subnet };
  }

  async #identity(): Promise<string> {
    try {
      const st = await Deno.stat(this.#statePath);
      return `${st.ino}:${st.mtime?.getTime()}:${st.size}`;
    } catch {
      return "none";
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
