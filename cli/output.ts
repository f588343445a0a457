/**
 * How skiff commands print: `-o table` (kubectl-style: upper-case headers, columns aligned
 * with three spaces) and `-o json` (2-space indented, stable keys, for scripts).
 * @module
 */
import { UsageError, usageLine } from "./command.ts";

/** The output formats every listing command accepts. */
export type OutputFormat = "table" | "json";

/** The `-o, --output` flag, in parseArgs' shape. */
export const OUTPUT_FLAG = { output: { type: "string", short: "o" } } as const;

/** The help line of the `-o` flag. */
export const OUTPUT_HELP = "  -o, --output FORMAT    table (default) or json";

/** The format asked for by `-o`; anything else is a UsageError naming the value. */
export function outputFormat(value: string | boolean | undefined, help: string): OutputFormat {
  const output = value ?? "table";
  if (output !== "table" && output !== "json") {
    throw new UsageError(`-o must be "table" or "json", not "${output}"`, usageLine(help));
  }
  return output;
}

/**
 * Rows aligned into columns: the first row is the header. Every row must have the header's
 * number of cells. Callers write "-" for "none" (an empty cell is left empty, e.g. a mark
 * column).
 */
export function renderTable(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return "";
  const width = rows[0].length;
  rows.forEach((row, i) => {
    if (row.length !== width) {
      throw new RangeError(`table row ${i} has ${row.length} cells, the header ${width}`);
    }
  });
  const cells = rows;
  const widths = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  return cells
    .map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("   ").trimEnd())
    .join("\n");
}

/** A header and rows, printed as a table (or `empty` on stderr when there are no rows). */
export interface TableView {
  readonly headers: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Said on stderr instead of an empty table, e.g. "No Services." */
  readonly empty: string;
}

/** Prints `json` (as JSON) or `table` (as a table) to stdout. */
export function printView(format: OutputFormat, json: unknown, table: TableView): void {
  if (format === "json") {
    console.log(JSON.stringify(json, null, 2));
  } else if (table.rows.length === 0) {
    console.error(table.empty);
  } else {
    console.log(renderTable([table.headers, ...table.rows]));
  }
}
