/**
 * A small etcd v3 client over etcd's HTTP/JSON gateway (grpc-gateway), using fetch.
 *
 * Why not a client library: the maintained etcd clients are Go/Java/Python; the npm ones
 * (etcd3) pull in @grpc/grpc-js and protobuf runtimes, a large surface for the handful of
 * calls skiff makes (range, txn, lease grant/keepalive/revoke, watch), and `jsr:` is not
 * reachable here. The gateway ships with every etcd ≥ 3.3 on the client port; its quirks:
 * keys/values are base64, 64-bit numbers arrive as strings, zero values are omitted, and
 * streams (watch) are one JSON object per line.
 * @module
 */
import { StoreError } from "./subnet_store.ts";

/** A key-value as etcd returns it (decoded). */
export interface EtcdKv {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly lease: string;
}

/** One watch event (decoded). */
export interface EtcdEvent {
  readonly type: "PUT" | "DELETE";
  readonly kv: EtcdKv;
}

/** A compare of a txn, in the gateway's JSON form (key already a string). */
export type EtcdCompare =
  | { key: string; target: "CREATE"; result: "EQUAL" | "GREATER" | "LESS"; createRevision: number }
  | { key: string; target: "VALUE"; result: "EQUAL"; value: string };

/** A request of a txn branch. */
export type EtcdOp =
  | { put: { key: string; value: string; lease?: string } }
  | { delete: { key: string } };

/** What one watch stream delivered: events or the reason it ended. */
export type EtcdWatchMessage =
  | { readonly kind: "events"; readonly revision: number; readonly events: readonly EtcdEvent[] }
  | { readonly kind: "created"; readonly revision: number }
  | { readonly kind: "compacted"; readonly compactRevision: number };

const enc = new TextEncoder();
const dec = new TextDecoder();

function b64(text: string): string {
  let bin = "";
  for (const byte of enc.encode(text)) bin += String.fromCharCode(byte);
  return btoa(bin);
}

function unb64(text: string | undefined): string {
  if (!text) return "";
  const bin = atob(text);
  return dec.decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

/** The end of a prefix range: the prefix with its last byte incremented. */
export function prefixEnd(prefix: string): string {
  const bytes = enc.encode(prefix);
  const end = bytes.slice();
  end[end.length - 1]++;
  return dec.decode(end);
}

// deno-lint-ignore no-explicit-any
type Json = any;

function decodeKv(kv: Json): EtcdKv {
  return {
    key: unb64(kv.key),
    value: unb64(kv.value),
    createRevision: Number(kv.create_revision ?? 0),
    modRevision: Number(kv.mod_revision ?? 0),
    lease: String(kv.lease ?? "0"),
  };
}

/** Options for {@linkcode EtcdClient}. */
export interface EtcdClientOptions {
  /** http://host:port URLs of etcd's client port; tried in order. */
  readonly endpoints: readonly string[];
  /** Timeout of a unary call (default 5 s). */
  readonly timeoutMs?: number;
}

/** A stateless etcd v3 client; every call picks the first endpoint that answers. */
export class EtcdClient {
  readonly #endpoints: readonly string[];
  readonly #timeout: number;
  #preferred = 0;

  constructor(options: EtcdClientOptions) {
    if (options.endpoints.length === 0) throw new TypeError("etcd: no endpoints");
    this.#endpoints = options.endpoints.map((e) => e.replace(/\/+$/, ""));
    this.#timeout = options.timeoutMs ?? 5000;
  }

  async #post(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    let lastError: unknown;
    for (let i = 0; i < this.#endpoints.length; i++) {
      const index = (this.#preferred + i) % this.#endpoints.length;
      try {
        const response = await fetch(`${this.#endpoints[index]}${path}`, {
          method: "POST",
          body: JSON.stringify(body),
          headers: { "content-type": "application/json" },
          signal,
        });
        this.#preferred = index;
        return response;
      } catch (error) {
        if (signal?.aborted && !(error instanceof DOMException && error.name === "TimeoutError")) {
          throw error;
        }
        lastError = error;
      }
    }
    throw new StoreError(
      `etcd unreachable at ${this.#endpoints.join(", ")}: ${(lastError as Error)?.message}`,
      { cause: lastError },
    );
  }

  async #call(path: string, body: unknown): Promise<Json> {
    const signal = AbortSignal.timeout(this.#timeout);
    const response = await this.#post(path, body, signal);
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw new StoreError(`etcd ${path}: reading the answer failed: ${(error as Error).message}`);
    }
    let json: Json;
    try {
      json = JSON.parse(text);
    } catch {
      throw new StoreError(
        `etcd ${path}: HTTP ${response.status}, not JSON: ${text.slice(0, 200)}`,
      );
    }
    if (!response.ok || json.error) {
      throw new StoreError(`etcd ${path}: ${json.error ?? json.message ?? response.status}`);
    }
    return json;
  }

  /** One key, or undefined. */
  async get(key: string): Promise<EtcdKv | undefined> {
    const json = await this.#call("/v3/kv/range", { key: b64(key) });
    return json.kvs?.[0] ? decodeKv(json.kvs[0]) : undefined;
  }

  /** All keys under a prefix, with the store revision they are consistent with. */
  async range(prefix: string): Promise<{ kvs: EtcdKv[]; revision: number }> {
    const json = await this.#call("/v3/kv/range", {
      key: b64(prefix),
      range_end: b64(prefixEnd(prefix)),
    });
    return { kvs: (json.kvs ?? []).map(decodeKv), revision: Number(json.header.revision) };
  }

  /** A put (with an optional lease id). */
  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.#call("/v3/kv/put", { key: b64(key), value: b64(value), ...(lease && { lease }) });
  }

  /** Deletes one key. */
  async delete(key: string): Promise<void> {
    await this.#call("/v3/kv/deleterange", { key: b64(key) });
  }

  /** A transaction; returns whether the compares held. */
  async txn(compare: EtcdCompare[], success: EtcdOp[], failure: EtcdOp[] = []): Promise<boolean> {
    const cmp = compare.map((c) =>
      c.target === "CREATE"
        ? { key: b64(c.key), target: "CREATE", result: c.result, create_revision: c.createRevision }
        : { key: b64(c.key), target: "VALUE", result: c.result, value: b64(c.value) }
    );
    const op = (o: EtcdOp) =>
      "put" in o
        ? {
          request_put: {
            key: b64(o.put.key),
            value: b64(o.put.value),
            ...(o.put.lease && { lease: o.put.lease }),
          },
        }
        : { request_delete_range: { key: b64(o.delete.key) } };
    const json = await this.#call("/v3/kv/txn", {
      compare: cmp,
      success: success.map(op),
      failure: failure.map(op),
    });
    return json.succeeded === true;
  }

  /** Grants a lease of `ttlSeconds`; returns its id (a decimal string). */
  async grant(ttlSeconds: number): Promise<string> {
    const json = await this.#call("/v3/lease/grant", { TTL: String(ttlSeconds) });
    return String(json.ID);
  }

  /** Refreshes a lease; returns the new TTL in seconds, 0 when the lease is gone. */
  async keepAlive(id: string): Promise<number> {
    const json = await this.#call("/v3/lease/keepalive", { ID: id });
    return Number(json.result?.TTL ?? 0);
  }

  /** Remaining TTL of a lease in seconds (-1 when it is gone). */
  async timeToLive(id: string): Promise<number> {
    const json = await this.#call("/v3/lease/timetolive", { ID: id });
    return Number(json.TTL ?? -1);
  }

  /** Revokes a lease (its keys go with it); a missing lease is fine. */
  async revoke(id: string): Promise<void> {
    try {
      await this.#call("/v3/lease/revoke", { ID: id });
    } catch (error) {
      if (!/not found/i.test((error as Error).message)) throw error;
    }
  }

  /**
   * Watches a prefix from `startRevision` until the stream ends or `signal` aborts. The
   * generator ends when the connection drops; the caller resumes from the last revision.
   */
  async *watch(
    prefix: string,
    startRevision: number,
    signal: AbortSignal,
  ): AsyncGenerator<EtcdWatchMessage> {
    const response = await this.#post("/v3/watch", {
      create_request: {
        key: b64(prefix),
        range_end: b64(prefixEnd(prefix)),
        start_revision: String(startRevision),
      },
    }, signal);
    if (!response.ok || !response.body) {
      throw new StoreError(`etcd /v3/watch: HTTP ${response.status}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          const json = JSON.parse(line);
          if (json.error) throw new StoreError(`etcd watch: ${json.error.message ?? json.error}`);
          const result = json.result ?? {};
          const revision = Number(result.header?.revision ?? 0);
          if (result.compact_revision && result.compact_revision !== "0") {
            yield { kind: "compacted", compactRevision: Number(result.compact_revision) };
            return;
          }
          if (result.canceled) return;
          if (result.created) {
            yield { kind: "created", revision };
            continue;
          }
          const events: EtcdEvent[] = (result.events ?? []).map((e: Json) => ({
            // PUT is the zero value of the enum, so the gateway omits it.
            type: e.type === "DELETE" ? "DELETE" : "PUT",
            kv: decodeKv(e.kv),
          }));
          if (events.length > 0) yield { kind: "events", revision, events };
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }
}
