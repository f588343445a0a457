/**
 * Step-by-step progress for the demo, in plain text: "[n/N] title", then "✓ detail (time)" or
 * "✗ error (time)" under it; indented blocks for command output.
 * @module
 */

/** Prints numbered steps with their duration. */
export class Progress {
  #n = 0;

  constructor(public total: number, readonly write: (line: string) => void = console.log) {}

  /** Runs `body` as the next step; prints ✓ with `done(result)` or ✗ with the error. */
  async step<T>(
    title: string,
    body: () => Promise<T>,
    done: (result: T) => string = () => "done",
  ): Promise<T> {
    this.#n++;
    if (this.#n > this.total) this.total = this.#n; // extra steps (e.g. teardown after a failure)
    const width = String(this.total).length;
    this.write(`[${String(this.#n).padStart(width)}/${this.total}] ${title}`);
    const t0 = performance.now();
    try {
      const result = await body();
      this.write(`${this.#pad()}✓ ${done(result)} (${seconds(performance.now() - t0)})`);
      return result;
    } catch (error) {
      this.write(
        `${this.#pad()}✗ ${(error as Error).message} (${seconds(performance.now() - t0)})`,
      );
      throw error;
    }
  }

  /** Prints lines indented under the current step. */
  block(text: string): void {
    for (const line of text.replace(/\n+$/, "").split("\n")) this.write(`${this.#pad()}  ${line}`);
  }

  /** Prints one line indented under the current step. */
  note(text: string): void {
    this.write(`${this.#pad()}${text}`);
  }

  #pad(): string {
    return " ".repeat(String(this.total).length * 2 + 4);
  }
}

/** "0.8 s", "12 ms". */
export function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
