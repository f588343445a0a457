import assert from "node:assert/strict";
import { installPlugin } from "./install.ts";
import { saveDelegate } from "./store.ts";

Deno.test("installPlugin places a 0755 shim that runs with an empty environment", async () => {
  const dir = await Deno.makeTempDir({ prefix: "skinst" });
  try {
    const path = await installPlugin(`${dir}/bin`);
    assert.equal(path, `${dir}/bin/skiff`);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o755);
    // a runtime may pass almost nothing: no PATH, no HOME, another cwd
    const out = await new Deno.Command("env", {
      args: ["-i", "CNI_COMMAND=VERSION", path],
      cwd: "/",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const answer = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(answer.supportedVersions, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveDelegate makes the data dir 0700 and the file 0600", async () => {
  const dir = await Deno.makeTempDir({ prefix: "skstore" });
  try {
    const dataDir = `${dir}/var/lib/cni/skiff`;
    await saveDelegate(dataDir, { containerID: "abc", ifName: "eth0", network: "n", delegate: {} });
    assert.equal((await Deno.stat(dataDir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(`${dataDir}/abc`)).mode! & 0o777, 0o600);
    assert.deepEqual([...Deno.readDirSync(dataDir)].map((e) => e.name), ["abc"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
