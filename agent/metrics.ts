/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format (version 0.0.4). Collectors registered with `onScrape` refresh gauges
 * that are read from the kernel (map sizes, BPF counters) only when somebody scrapes.
 * @module
 */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  const body = keys.map((k) =>
    `${k}="${labels[k].replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  ).join(",");
  return `{${body}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  render(): string[];
}

/** A monotonically increasing count. */
export class Counter implements Metric {
  readonly type = "counter";
  #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
  /** Sets the total read from elsewhere (e.g. a BPF per-CPU counter sum). */
  setTotal(labels: Labels, value: number): void {
    this.#values.set(labelKey(labels), value);
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  reset(): void {
    this.#values.clear();
  }
  render(): string[] {
    return [...this.#values].map(([k, v]) => `${this.name}${k} ${formatValue(v)}`);
  }
}

/** A value that goes up and down. */
export class Gauge implements Metric {
  readonly type = "gauge";
  #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  set(labels: Labels, value: number): void {
    this.#values.set(labelKey(labels), value);
  }
  get(labels: Labels = {}): number | undefined {
    return this.#values.get(labelKey(labels));
  }
  reset(): void {
    this.#values.clear();
  }
  render(): string[] {
    return [...this.#values].map(([k, v]) => `${this.name}${k} ${formatValue(v)}`);
  }
}

/** A histogram with fixed buckets (upper bounds, seconds for durations). */
export class Histogram implements Metric {
  readonly type = "histogram";
  #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
  ) {}
  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    this.buckets.forEach((b, i) => {
      if (value <= b) s!.counts[i]++;
    });
    s.sum += value;
    s.count++;
  }
  count(labels: Labels = {}): number {
    return this.#series.get(labelKey(labels))?.count ?? 0;
  }
  render(): string[] {
    const lines: string[] = [];
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) => {
        lines.push(
          `${this.name}_bucket${labelKey({ ...s.labels, le: formatValue(b) })} ${s.counts[i]}`,
        );
      });
      lines.push(`${this.name}_bucket${labelKey({ ...s.labels, le: "+Inf" })} ${s.count}`);
      lines.push(`${this.name}_sum${labelKey(s.labels)} ${s.sum}`);
      lines.push(`${this.name}_count${labelKey(s.labels)} ${s.count}`);
    }
    return lines;
  }
}

/** A set of metrics plus scrape-time collectors. */
export class Registry {
  #metrics = new Map<string, Metric>();
  #collectors: (() => Promise<void> | void)[] = [];

  #add<T extends Metric>(metric: T): T {
    if (this.#metrics.has(metric.name)) throw new Error(`metric ${metric.name} registered twice`);
    this.#metrics.set(metric.name, metric);
    return metric;
  }
  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.#add(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets?: readonly number[]): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }
  /** Runs `collect` before each scrape; a failing collector is reported, not fatal. */
  onScrape(collect: () => Promise<void> | void): void {
    this.#collectors.push(collect);
  }
  /** The text exposition of every metric. */
  async render(): Promise<string> {
    const errors = this.#metrics.get("skiff_scrape_collector_errors_total") as Counter | undefined;
    for (const collect of this.#collectors) {
      try {
        await collect();
      } catch {
        errors?.inc();
      }
    }
    const out: string[] = [];
    for (const m of this.#metrics.values()) {
      out.push(
        `# HELP ${m.name} ${m.help.replace(/\n/g, " ")}`,
        `# TYPE ${m.name} ${m.type}`,
        ...m.render(),
      );
    }
    return out.join("\n") + "\n";
  }
}

/** Parses the text exposition format into name{labels} → value (for tests and the CLI). */
export function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (!m) throw new SyntaxError(`not a metric line: ${line}`);
    const v = m[2] === "+Inf" ? Infinity : m[2] === "-Inf" ? -Infinity : Number(m[2]);
    out.set(m[1], v);
  }
  return out;
}
