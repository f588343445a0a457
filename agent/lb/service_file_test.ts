// The services file: round trips, refusals that leave the file alone, locking across processes.
import assert from "node:assert/strict";
import {
  deleteService,
  putServices,
  readServiceFile,
  ServiceFileError,
  updateServiceFile,
  watchServiceFile,
} from "./service_file.ts";
import { parseServiceEntry, ServiceValidationError } from "./validate.ts";
import type { ServiceEntry } from "./model.ts";

function entry(name: string, ip: string, extra: Record<string, unknown> = {}): ServiceEntry {
  return parseServiceEntry({
    name,
    clusterIP: ip,
    ports: [{ port: 80, targetPort: 8080 }],
    endpoints: [{ ip: "10.244.1.5", node: "n1" }],
    ...extra,
  });
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "skiff-svcfile-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("readServiceFile() of a missing file is an empty snapshot", async () => {
  await withTempDir(async (dir) => {
    assert.deepEqual(await readServiceFile(`${dir}/none.json`), { services: [] });
  });
});

Deno.test("putServices() adds, replaces and keeps Services sorted; deleteService() removes", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/sub/services.json`; // the directory is created on first write
    const r1 = await putServices(file, [entry("web", "10.96.0.10"), entry("api", "10.96.0.11")]);
    assert.deepEqual(r1, { added: ["default/web", "default/api"], replaced: [] });
    const web2 = entry("web", "10.96.0.10", { endpoints: [{ ip: "10.244.2.7", node: "n2" }] });
    const r2 = await putServices(file, [web2]);
    assert.deepEqual(r2, { added: [], replaced: ["default/web"] });
    const snap = await readServiceFile(file);
    assert.deepEqual(snap.services.map((e) => e.service.name), ["api", "web"]);
    assert.deepEqual(snap.services[1], web2);
    assert.equal(await deleteService(file, "default/api"), true);
    assert.equal(await deleteService(file, "default/api"), false);
    assert.deepEqual((await readServiceFile(file)).services, [web2]);
    assert.deepEqual(
      await listDir(`${dir}/sub`),
      ["services.json", "services.json.lock"],
      "no temp files left",
    );
    // Human-readable on disk: the flat shape, defaults written out.
    const raw = JSON.parse(await Deno.readTextFile(file));
    assert.equal(raw.services[0].clusterIPs[0], "10.96.0.10");
    assert.equal(raw.services[0].sessionAffinity, "None");
  });
});

Deno.test("putServices() refuses a frontend clash with a stored Service and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/services.json`;
    await putServices(file, [entry("web", "10.96.0.10")]);
    const before = await Deno.readTextFile(file);
    await assert.rejects(
      () => putServices(file, [entry("ok", "10.96.0.12"), entry("clash", "10.96.0.10")]),
      (e: unknown) => {
        assert.ok(e instanceof ServiceValidationError);
        assert.equal(e.path, "services[1]");
        assert.match(
          e.problem,
          /10\.96\.0\.10:80\/TCP of Service default\/clash is already .* default\/web/,
        );
        return true;
      },
    );
    assert.equal(await Deno.readTextFile(file), before);
    await assert.rejects(
      () => putServices(file, [entry("a", "10.96.0.12"), entry("a", "10.96.0.13")]),
      /services\[1\]: Service default\/a is defined twice \(also services\[0\]\)/,
    );
    assert.equal(await Deno.readTextFile(file), before);
  });
});

Deno.test("a corrupt or invalid file gives a clear error and is never overwritten", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/services.json`;
    for (
      const [text, message] of [
        ['{"services": [', /is not valid JSON/],
        [
          '{"services": [{"name": "web", "ports": [{"port": 0}]}]}',
          /invalid Service: services\[0\]\.ports\[0\]\.port: 0 is out of range/,
        ],
        ['{"servics": []}', /servics: unknown field/],
      ] as const
    ) {
      await Deno.writeTextFile(file, text);
      await assert.rejects(() => readServiceFile(file), (e: unknown) => {
        assert.ok(e instanceof ServiceFileError);
        assert.match(e.message, message);
        assert.ok(e.message.startsWith(file));
        return true;
      });
      await assert.rejects(() => putServices(file, [entry("web", "10.96.0.10")]), ServiceFileError);
      await assert.rejects(() => deleteService(file, "default/web"), ServiceFileError);
      assert.equal(await Deno.readTextFile(file), text);
    }
  });
});

Deno.test("updateServiceFile() leaves the file alone when the change throws", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/services.json`;
    await putServices(file, [entry("web", "10.96.0.10")]);
    const before = await Deno.readTextFile(file);
    await assert.rejects(
      () =>
        updateServiceFile(file, () => {
          throw new Error("changed my mind");
        }),
      /changed my mind/,
    );
    assert.equal(await Deno.readTextFile(file), before);
  });
});

Deno.test("putServices() calls in parallel all keep their update", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/services.json`;
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => putServices(file, [entry(`s${i}`, `10.96.1.${i + 1}`)])),
    );
    const names = (await readServiceFile(file)).services.map((e) => e.service.name);
    assert.deepEqual(names, Array.from({ length: 10 }, (_, i) => `s${i}`).sort());
  });
});

Deno.test("a writer waits for another process's lock, times out clearly, and proceeds once it dies", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/services.json`;
    await putServices(file, [entry("web", "10.96.0.10")]);
    // A real other process holds the flock until it is killed, as a skiff writer would.
    const holder = new Deno.Command(Deno.execPath(), {
      args: ["eval", HOLD_LOCK, `${file}.lock`],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      await waitForLine(holder.stdout, "locked");
      await assert.rejects(
        () => putServices(file, [entry("api", "10.96.0.11")], { lockTimeoutMs: 300 }),
        new RegExp(`still locked by another skiff process \\(pid ${holder.pid}\\) after 300 ms`),
      );
      assert.equal((await readServiceFile(file)).services.length, 1, "reads need no lock");
      const pending = putServices(file, [entry("api", "10.96.0.11")], { lockTimeoutMs: 10_000 });
      holder.kill("SIGKILL"); // the kernel drops a dead holder's flock: no stale lock
      await pending;
      assert.equal((await readServiceFile(file)).services.length, 2);
    } finally {
      try {
        holder.kill("SIGKILL");
      } catch { /* already dead */ }
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
    }
  });
});

/** Locks the file named by the argument like a skiff writer, says so, then sleeps. */
const HOLD_LOCK = `
const f = await Deno.open(Deno.args[0], { read: true, write: true });
await f.lock(true);
await f.truncate(0);
await f.write(new TextEncoder().encode("pid " + Deno.pid + "\\n"));
console.log("locked");
await new Promise((r) => setTimeout(r, 30000));
`;

/** Reads the stream until a line equal to `want` (bounded by 10 s), then lets it drain. */
async function waitForLine(stream: ReadableStream<Uint8Array>, want: string): Promise<void> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = setTimeout(() => reader.cancel(), 10_000);
  try {
    while (!text.split("\n").includes(want)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before "${want}" (got ${JSON.stringify(text)})`);
      text += value;
    }
  } finally {
    clearTimeout(deadline);
    reader.releaseLock();
  }
}

Deno.test("watchServiceFile() reports each write of the file, not of its neighbours", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/services.json`;
    let changes = 0;
    let wake: (() => void) | undefined;
    using _watch = watchServiceFile(file, () => {
      changes++;
      wake?.();
    }, { debounceMs: 10 });
    const nextChange = (what: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no change seen after ${what}`)), 5000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });

    let seen = nextChange("the first add");
    await putServices(file, [entry("web", "10.96.0.10")]);
    await seen;
    seen = nextChange("a delete");
    const before = changes;
    await deleteService(file, "default/web");
    await seen;
    assert.ok(changes > before);

    // A neighbour file (and the lock file) change nothing.
    wake = undefined;
    const quiet = changes;
    await Deno.writeTextFile(`${dir}/other.json`, "{}");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(changes, quiet);
  });
});
