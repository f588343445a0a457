/**
 * Structured logs with levels, as text (`ts level msg k=v …`) or one JSON object per line.
 * Kernel changes are logged at debug with what and why, so `--log-level debug` shows them all.
 * @module
 */
import type { LogLevelName } from "./config.ts";

const RANK: Record<LogLevelName, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Structured fields attached to a line. */
export type LogFields = Record<string, unknown>;

/** A logger; `with()` returns a child that adds fields to every line. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  with(fields: LogFields): Logger;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  level?: LogLevelName;
  format?: "text" | "json";
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
}

function textValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message);
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return /[\s"=]/.test(text ?? "") ? JSON.stringify(text) : String(text);
}

const encoder = new TextEncoder();

/** Creates a logger writing to stderr (or `write`). */
export function createLogger(options: LoggerOptions = {}, base: LogFields = {}): Logger {
  const min = RANK[options.level ?? "info"];
  const format = options.format ?? "text";
  const write = options.write ??
    ((line: string) => Deno.stderr.writeSync(encoder.encode(line + "\n")));
  const emit = (level: LogLevelName, msg: string, fields: LogFields = {}) => {
    if (RANK[level] < min) return;
    const all = { ...base, ...fields };
    const ts = new Date().toISOString();
    if (format === "json") {
      const clean = Object.fromEntries(
        Object.entries(all).map(([k, v]) => [k, v instanceof Error ? v.message : v]),
      );
      write(JSON.stringify({ ts, level, msg, ...clean }));
    } else {
      const kv = Object.entries(all).map(([k, v]) => `${k}=${textValue(v)}`).join(" ");
      write(`${ts} ${level.toUpperCase().padEnd(5)} ${msg}${kv ? " " + kv : ""}`);
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    with: (fields) => createLogger(options, { ...base, ...fields }),
  };
}

/** A logger that drops everything (for library calls made without one). */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });
