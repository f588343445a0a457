// The shared table/JSON printer: alignment, cell-count check, -o validation.
import assert from "node:assert/strict";
import { UsageError } from "./command.ts";
import { outputFormat, renderTable } from "./output.ts";

Deno.test("renderTable() aligns columns under upper-case headers, three spaces apart", () => {
  assert.equal(
    renderTable([["NAME", "IP"], ["web", "10.96.0.10"], ["a-long-name", "-"]]),
    ["NAME          IP", "web           10.96.0.10", "a-long-name   -"].join("\n"),
  );
});

Deno.test("renderTable() refuses a row with the wrong number of cells", () => {
  assert.throws(() => renderTable([["A", "B"], ["1"]]), /row 1 has 1 cells, the header 2/);
});

Deno.test("outputFormat() takes table (default) and json, and names anything else", () => {
  assert.equal(outputFormat(undefined, "Usage: x"), "table");
  assert.equal(outputFormat("json", "Usage: x"), "json");
  assert.throws(() => outputFormat("yaml", "Usage: x"), (e) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /-o must be "table" or "json", not "yaml"/);
    return true;
  });
});
