/**
 * The agent's run loop: components (overlay, CNI config, Service data plane, node rules) are
 * converged in order at start, then again on every resync tick and whenever one of them asks
 * (a lease event, a changed services file). Readiness turns green only once every component
 * converged; each sync is timed into a histogram and failures are counted and retried.
 * @module
 */
import type { Readiness } from "./health.ts";
import type { Logger } from "./log.ts";
import type { Counter, Histogram, Registry } from "./metrics.ts";

/** What a component did in one sync. */
export interface ComponentSyncResult {
  /** Kernel/file operations made (0 when already converged). */
  readonly operations?: number;
  /** Extra fields for the log line. */
  readonly detail?: Record<string, unknown>;
}

/** A converging part of the agent. */
export interface Component {
  readonly name: string;
  /** Converge once. Throwing marks the sync failed; it is retried on the next trigger. */
  sync(): Promise<ComponentSyncResult | void>;
  /** Starts watchers that call `trigger()` when this component should sync again. */
  watch?(trigger: () => void): void;
  /** Stops watchers and releases handles; kernel state stays. */
  close(): Promise<void>;
}

/** Options for {@linkcode Daemon}. */
export interface DaemonOptions {
  readonly log: Logger;
  readonly registry: Registry;
  readonly readiness: Readiness;
  /** Seconds between full resyncs. */
  readonly resyncSeconds: number;
}

/** Runs components; `stop()` leaves the data plane in place. */
export class Daemon {
  readonly #components: Component[];
  readonly #opts: DaemonOptions;
  readonly #durations: Histogram;
  readonly #errors: Counter;
  readonly #ops: Counter;
  #dirty = new Set<string>();
  #wake: (() => void) | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #failed = new Set<string>();

  constructor(components: Component[], options: DaemonOptions) {
    this.#components = components;
    this.#opts = options;
    this.#durations = options.registry.histogram(
      "skiff_sync_duration_seconds",
      "Time to converge one component",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    );
    this.#errors = options.registry.counter("skiff_sync_errors_total", "Failed component syncs");
    this.#ops = options.registry.counter(
      "skiff_sync_operations_total",
      "Kernel and file operations made by syncs",
    );
    for (const c of components) options.readiness.expect(c.name);
  }

  /** Marks a component for a sync soon (from watchers). */
  trigger(name?: string): void {
    for (const c of this.#components) if (!name || c.name === name) this.#dirty.add(c.name);
    this.#wake?.();
  }

  async #syncOne(c: Component): Promise<boolean> {
    const t0 = performance.now();
    try {
      const result = await c.sync();
      const seconds = (performance.now() - t0) / 1000;
      this.#durations.observe({ component: c.name }, seconds);
      const operations = result?.operations ?? 0;
      this.#ops.inc({ component: c.name }, operations);
      this.#opts.readiness.converged(c.name);
      this.#failed.delete(c.name);
      const log = operations > 0 ? this.#opts.log.info : this.#opts.log.debug;
      log(`synced ${c.name}`, {
        ms: Math.round(seconds * 1000 * 10) / 10,
        operations,
        ...result?.detail,
      });
      return true;
    } catch (error) {
      this.#errors.inc({ component: c.name });
      this.#failed.add(c.name);
      this.#opts.log.error(`sync of ${c.name} failed; retrying`, { error });
      return false;
    }
  }

  /** Converges every component in order (a failed one does not block the ones after it). */
  async syncAll(): Promise<boolean> {
    let ok = true;
    for (const c of this.#components) ok = (await this.#syncOne(c)) && ok;
    return ok;
  }

  /** First sync, then the loop. Resolves once the first pass is done. */
  async start(): Promise<void> {
    for (const c of this.#components) c.watch?.(() => this.trigger(c.name));
    await this.syncAll();
    const everyMs = this.#opts.resyncSeconds * 1000;
    this.#timer = setInterval(() => this.trigger(), everyMs);
    this.#opts.readiness.beat("resync", everyMs * 3);
    this.#loop = this.#run(everyMs);
  }

  async #run(everyMs: number): Promise<void> {
    while (!this.#stopped) {
      if (this.#dirty.size === 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          // Failed components are retried even without a trigger.
          setTimeout(resolve, Math.min(everyMs, 2000));
        });
        this.#wake = undefined;
      }
      if (this.#stopped) break;
      const pending = this.#components.filter((c) =>
        this.#dirty.has(c.name) || this.#failed.has(c.name)
      );
      this.#dirty.clear();
      for (const c of pending) await this.#syncOne(c);
      this.#opts.readiness.beat("resync", everyMs * 3);
    }
  }

  /** Stops loops and closes components; kernel state is left in place. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#wake?.();
    await this.#loop;
    this.#opts.readiness.stopLoop("resync");
    for (const c of [...this.#components].reverse()) {
      await c.close().catch((error) => this.#opts.log.warn(`closing ${c.name} failed`, { error }));
    }
  }
}
