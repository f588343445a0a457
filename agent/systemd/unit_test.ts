/** The unit passes systemd-analyze verify and its ExecStart parses into a runnable argv. */
import assert from "node:assert/strict";
import { run } from "../net/exec.ts";
import {
  execEnvironment,
  execStartArgv,
  PROJECT_ROOT,
  renderUnit,
  splitCommandLine,
} from "./unit.ts";

Deno.test("the rendered unit passes systemd-analyze verify", async () => {
  const dir = await Deno.makeTempDir({ prefix: "skiff-unit-" });
  try {
    const unit = await renderUnit();
    assert.ok(!unit.includes("@ROOT@") && !unit.includes("@DENO@"));
    await Deno.writeTextFile(`${dir}/skiff.service`, unit);
    const out = await run(["systemd-analyze", "verify", `${dir}/skiff.service`], {
      allowFailure: true,
    });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stderr.trim(), "", "verify printed warnings");
    for (
      const key of [
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
      ]
    ) {
      assert.ok(unit.includes(key), key);
    }
    assert.match(unit, /^CapabilityBoundingSet=CAP_BPF /m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("execStartArgv() gives the agent command line of the unit", async () => {
  const argv = execStartArgv(await renderUnit());
  assert.equal(argv[0], `${PROJECT_ROOT}/node_modules/deno/deno`);
  assert.deepEqual(argv.slice(-3), [
    `${PROJECT_ROOT}/agent/main.ts`,
    "--config",
    "/etc/skiff/config.json",
  ]);
});

Deno.test("splitCommandLine() honours quotes and escapes", () => {
  assert.deepEqual(splitCommandLine(`/bin/a "b c" d\\ e ""`), ["/bin/a", "b c", "d e", ""]);
  assert.throws(() => splitCommandLine(`/bin/a "b`), /unterminated/);
});

Deno.test("execEnvironment() gives the variables of the unit's Environment= lines", async () => {
  const env = execEnvironment(await renderUnit());
  assert.equal(env.DENO_DIR, "/var/lib/skiff/deno-cache");
  assert.equal(env.DENO_NO_UPDATE_CHECK, "1");
  assert.deepEqual(execEnvironment(`Environment=A=1 "B=x y"\nEnvironment=C=`), {
    A: "1",
    B: "x y",
    C: "",
  });
  assert.throws(() => execEnvironment("Environment=oops"), /"oops" is not NAME=value/);
});
