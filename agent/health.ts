/**
 * Health and readiness (kube-proxy's :10256 convention) and the Prometheus endpoint.
 * Readiness: every registered component must have converged once; health: the loops are alive
 * (each reports a heartbeat, and one that is late by more than its allowance turns /healthz red).
 * @module
 */
import type { Registry } from "./metrics.ts";

/** Tracks which components converged and when each loop last beat. */
export class Readiness {
  #pending = new Set<string>();
  #done = new Map<string, number>();
  #beats = new Map<string, { at: number; allowanceMs: number }>();

  /** Declares a component that must converge before the agent is ready. */
  expect(component: string): void {
    if (!this.#done.has(component)) this.#pending.add(component);
  }
  /** Marks a component converged (the first time counts; later calls refresh). */
  converged(component: string): void {
    this.#pending.delete(component);
    this.#done.set(component, Date.now());
  }
  /** Records that a loop is alive; it must beat again within `allowanceMs`. */
  beat(loop: string, allowanceMs: number): void {
    this.#beats.set(loop, { at: Date.now(), allowanceMs });
  }
  /** Forgets a loop (it was stopped on purpose). */
  stopLoop(loop: string): void {
    this.#beats.delete(loop);
  }
  get ready(): boolean {
    return this.#pending.size === 0 && this.#done.size > 0;
  }
  get pending(): string[] {
    return [...this.#pending].sort();
  }
  /** Loops that missed their heartbeat. */
  stale(now = Date.now()): string[] {
    return [...this.#beats].filter(([, b]) => now - b.at > b.allowanceMs).map(([n]) => n).sort();
  }
}

function parseAddress(address: string): { hostname: string; port: number } {
  const i = address.lastIndexOf(":");
  return {
    hostname: address.slice(0, i).replace(/^\[|\]$/g, ""),
    port: Number(address.slice(i + 1)),
  };
}

/** Options for {@linkcode serveHealth}. */
export interface HealthServerOptions {
  /** host:port for /healthz and /readyz ("" = off). */
  healthAddress: string;
  /** host:port for /metrics ("" = off); the same address as health serves both. */
  metricsAddress: string;
  readiness: Readiness;
  registry: Registry;
  /** Extra JSON for /statusz (what `skiff status` shows). */
  status?: () => Promise<unknown> | unknown;
}

/** A running server pair; `close()` stops both. */
export interface HealthServers {
  readonly healthPort?: number;
  readonly metricsPort?: number;
  close(): Promise<void>;
}

/** Starts the health/readiness server and the metrics server. */
export function serveHealth(options: HealthServerOptions): HealthServers {
  const { readiness, registry } = options;
  const handler = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (path === "/healthz" || path === "/livez") {
      const stale = readiness.stale();
      return new Response(
        JSON.stringify({ healthy: stale.length === 0, staleLoops: stale }) + "\n",
        { status: stale.length === 0 ? 200 : 503, headers: { "content-type": "application/json" } },
      );
    }
    if (path === "/readyz") {
      return new Response(
        JSON.stringify({ ready: readiness.ready, pending: readiness.pending }) + "\n",
        { status: readiness.ready ? 200 : 503, headers: { "content-type": "application/json" } },
      );
    }
    if (path === "/metrics") {
      return new Response(await registry.render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    if (path === "/statusz" && options.status) {
      return new Response(JSON.stringify(await options.status()) + "\n", {
        headers: { "content-type": "application/json" },
      });
    }
    return new Response("not found\n", { status: 404 });
  };
  const servers: Deno.HttpServer[] = [];
  let healthPort: number | undefined;
  let metricsPort: number | undefined;
  const listen = (address: string) => {
    const { hostname, port } = parseAddress(address);
    const server = Deno.serve({ hostname, port, onListen: () => {} }, handler);
    servers.push(server);
    return server.addr.port;
  };
  if (options.healthAddress) healthPort = listen(options.healthAddress);
  if (options.metricsAddress && options.metricsAddress !== options.healthAddress) {
    metricsPort = listen(options.metricsAddress);
  } else if (options.metricsAddress) metricsPort = healthPort;
  return {
    healthPort,
    metricsPort,
    close: async () => {
      await Promise.all(servers.map((s) => s.shutdown()));
    },
  };
}
