// `skiff service …` run as a real subprocess against a temporary services file.
import assert from "node:assert/strict";
import { MAX_BACKENDS_PER_SERVICE } from "../agent/lb/validate.ts";

const SKIFF = new URL("./skiff.ts", import.meta.url).pathname;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function skiff(args: string[], stdin?: string): Promise<Result> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SKIFF, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function withFile(fn: (file: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "skiff-cli-" });
  try {
    await fn(`${dir}/services.json`, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const WEB = {
  namespace: "default",
  name: "web",
  clusterIP: "10.96.0.10",
  ports: [{ port: 80, targetPort: 8080, protocol: "TCP", nodePort: 30080 }],
  externalIPs: [],
  sessionAffinity: "ClientIP",
  endpoints: [{ ip: "10.244.1.5", node: "n1" }],
};

const DNS = {
  namespace: "kube-system",
  name: "dns",
  clusterIPs: ["10.96.0.53"],
  ports: [{ name: "dns", port: 53, protocol: "UDP" }, { name: "dns-tcp", port: 53 }],
  endpoints: [
    { ip: "10.244.1.9", node: "n1" },
    { ip: "10.244.2.9", node: "n2", terminating: true },
  ],
};

Deno.test("skiff service add, list (table and json) and del round-trip through the file", async () => {
  await withFile(async (file) => {
    const add = await skiff(["service", "add", "-f", "-", "--file", file], JSON.stringify(WEB));
    assert.equal(add.code, 0, add.stderr);
    assert.equal(add.stdout, "service default/web added\n");

    const inputPath = `${file}.in.json`;
    await Deno.writeTextFile(inputPath, JSON.stringify([DNS, WEB]));
    const add2 = await skiff(["service", "add", "--file", file, "-f", inputPath]);
    assert.equal(add2.code, 0, add2.stderr);
    assert.equal(add2.stdout, "service kube-system/dns added\nservice default/web replaced\n");

    const table = await skiff(["service", "list", "--file", file]);
    assert.equal(table.code, 0, table.stderr);
    assert.equal(
      table.stdout,
      [
        "NAMESPACE     NAME   CLUSTER-IP   PORTS           ENDPOINTS   AFFINITY",
        "default       web    10.96.0.10   80:30080/TCP    1/1         ClientIP(10800s)",
        "kube-system   dns    10.96.0.53   53/UDP,53/TCP   1/2         None",
        "",
      ].join("\n"),
    );

    const json = await skiff(["service", "list", "-o", "json", "--file", file]);
    assert.equal(json.code, 0, json.stderr);
    const listed = JSON.parse(json.stdout);
    assert.deepEqual(listed.services.map((s: { name: string }) => s.name), ["web", "dns"]);
    assert.deepEqual(listed.services[0].ports, [
      { name: "", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 },
    ]);
    assert.deepEqual(listed.services[1].endpoints[1], {
      ip: "10.244.2.9",
      node: "n2",
      ready: false,
      serving: true,
      terminating: true,
    });

    // list -o json is valid input for add: re-adding replaces both, and changes nothing.
    const before = await Deno.readTextFile(file);
    const again = await skiff(["service", "add", "-f", "-", "--file", file], json.stdout);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, "service default/web replaced\nservice kube-system/dns replaced\n");
    assert.equal(await Deno.readTextFile(file), before);

    const del = await skiff(["service", "del", "kube-system/dns", "--file", file]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, "service kube-system/dns deleted\n");
    const delWeb = await skiff(["service", "del", "web", "--file", file]); // namespace "default"
    assert.equal(delWeb.code, 0, delWeb.stderr);
    const empty = await skiff(["service", "list", "--file", file]);
    assert.equal(empty.code, 0);
    assert.equal(empty.stdout, "");
    assert.match(empty.stderr, /No Services/);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), { services: [] });
  });
});

/** WEB renamed (so it does not clash by name) with fields replaced. */
function svc(patch: Record<string, unknown>): Record<string, unknown> {
  return { ...WEB, name: "new", clusterIP: "10.96.0.20", ports: [{ port: 80 }], ...patch };
}

const MALFORMED: [string, string, RegExp][] = [
  [
    "bad IP",
    JSON.stringify(svc({ clusterIP: "10.96.0.300" })),
    /clusterIP: "10\.96\.0\.300" is not an IPv4 address/,
  ],
  [
    "bad externalIP",
    JSON.stringify(svc({ externalIPs: ["1.2.3"] })),
    /externalIPs\[0\]: "1\.2\.3" is not an IPv4/,
  ],
  [
    "port 0",
    JSON.stringify(svc({ ports: [{ port: 0 }] })),
    /ports\[0\]\.port: 0 is out of range 1\.\.65535/,
  ],
  [
    "port 65536",
    JSON.stringify(svc({ ports: [{ port: 65536 }] })),
    /ports\[0\]\.port: 65536 is out of range/,
  ],
  [
    "targetPort 70000",
    JSON.stringify(svc({ ports: [{ port: 80, targetPort: 70000 }] })),
    /targetPort: 70000 is out/,
  ],
  [
    "unknown protocol",
    JSON.stringify(svc({ ports: [{ port: 80, protocol: "SCTP" }] })),
    /unknown protocol "SCTP"/,
  ],
  [
    "duplicate frontend with a stored Service",
    JSON.stringify(svc({ clusterIP: "10.96.0.10" })),
    /duplicate frontend: 10\.96\.0\.10:80\/TCP of Service default\/new is already .* default\/web/,
  ],
  [
    "duplicate frontend inside the Service",
    JSON.stringify(svc({ ports: [{ name: "a", port: 80 }, { name: "b", port: 80 }] })),
    /ports\[1\]\.port: duplicate frontend: 80\/TCP/,
  ],
  [
    "NodePort clash",
    JSON.stringify(svc({ ports: [{ port: 81, nodePort: 30080 }] })),
    /nodePort 30080\/TCP of Service default\/new is already nodePort 30080\/TCP of Service default\/web/,
  ],
  [
    "duplicate port names",
    JSON.stringify(svc({ ports: [{ name: "a", port: 80 }, { name: "a", port: 81 }] })),
    /ports\[1\]\.name: duplicate port name "a"/,
  ],
  [
    "affinity timeout 0",
    JSON.stringify(svc({ sessionAffinity: "ClientIP", affinityTimeoutSeconds: 0 })),
    /affinityTimeoutSeconds: 0 is out of range 1\.\.86400/,
  ],
  [
    "affinity timeout above a day",
    JSON.stringify(svc({ sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } } })),
    /sessionAffinityConfig\.clientIP\.timeoutSeconds: 86401 is out of range/,
  ],
  [
    "more backends than the table holds",
    JSON.stringify(svc({
      endpoints: Array.from(
        { length: MAX_BACKENDS_PER_SERVICE + 1 },
        (_, i) => ({ ip: `10.1.${i >> 8}.${i & 255}`, node: "n1" }),
      ),
    })),
    new RegExp(
      `endpoints: ${
        MAX_BACKENDS_PER_SERVICE + 1
      } endpoints exceed the limit of ${MAX_BACKENDS_PER_SERVICE}`,
    ),
  ],
  ["unknown field", JSON.stringify(svc({ clusterIp: "10.96.0.1" })), /clusterIp: unknown field/],
  [
    "ready and terminating endpoint",
    JSON.stringify(
      svc({ endpoints: [{ ip: "10.244.1.5", node: "n1", ready: true, terminating: true }] }),
    ),
    /endpoints\[0\]\.ready: cannot be true for a terminating endpoint/,
  ],
  [
    "endpoint without node",
    JSON.stringify(svc({ endpoints: [{ ip: "10.244.1.5" }] })),
    /endpoints\[0\]\.node: is required/,
  ],
  [
    "duplicate endpoint",
    JSON.stringify(
      svc({ endpoints: [{ ip: "10.244.1.5", node: "n1" }, { ip: "10.244.1.5", node: "n2" }] }),
    ),
    /endpoints\[1\]\.ip: duplicate endpoint/,
  ],
  [
    "missing name",
    JSON.stringify({ clusterIP: "10.96.0.30", ports: [{ port: 80 }] }),
    /name: is required/,
  ],
  [
    "named targetPort",
    JSON.stringify(svc({ ports: [{ port: 80, targetPort: "http" }] })),
    /named target ports/,
  ],
  ["not JSON", "{name: web}", /input is not valid JSON/],
  ["no Service", "[]", /the input holds no Service/],
  [
    "a list with one bad Service (nothing half-done)",
    JSON.stringify([
      svc({ name: "good" }),
      svc({ name: "bad", clusterIP: "10.96.0.21", ports: [{ port: -1 }] }),
    ]),
    /\[1\]\.ports\[0\]\.port: -1 is out of range/,
  ],
  [
    "the same Service twice in one list",
    JSON.stringify([svc({ name: "twice" }), svc({ name: "twice", clusterIP: "10.96.0.22" })]),
    /\[1\]: Service default\/twice is defined twice \(also \[0\]\)/,
  ],
];

Deno.test(`skiff service add refuses ${MALFORMED.length} malformed inputs with exit 2 and leaves the file alone`, async () => {
  await withFile(async (file) => {
    const seed = await skiff(["service", "add", "-f", "-", "--file", file], JSON.stringify(WEB));
    assert.equal(seed.code, 0, seed.stderr);
    const before = await Deno.readTextFile(file);
    for (const [what, input, message] of MALFORMED) {
      const r = await skiff(["service", "add", "-f", "-", "--file", file], input);
      assert.equal(r.code, 2, `${what}: exit ${r.code}, stderr ${r.stderr}`);
      assert.match(r.stderr, message, what);
      assert.ok(r.stderr.startsWith("skiff: "), `${what}: ${r.stderr}`);
      assert.equal(r.stdout, "", what);
      assert.equal(await Deno.readTextFile(file), before, `${what}: file changed`);
    }
  });
});

Deno.test("skiff usage errors exit 2, --help exits 0 at every level, a missing Service exits 1", async () => {
  await withFile(async (file) => {
    const f = ["--file", file];
    const usageErrors = [
      [],
      ["bogus"],
      ["service"],
      ["service", "bogus"],
      ["service", "add", ...f],
      ["service", "list", "-o", "yaml", ...f],
      ["service", "list", "--bogus", ...f],
      ["service", "list", "extra", ...f],
      ["service", "list", "--file"],
      ["service", "del", ...f],
      ["service", "del", "a/b/c", ...f],
      ["service", "del", "Default/web", ...f],
    ];
    for (const args of usageErrors) {
      const r = await skiff(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^skiff: .*\n/, args.join(" "));
    }
    assert.equal(await Deno.stat(file).catch(() => null), null, "usage errors create no file");
    for (
      const args of [["--help"], ["service", "--help"], ["service", "add", "--help"], [
        "service",
        "del",
        "-h",
      ], ["service", "list", "--help"]]
    ) {
      const r = await skiff(args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: skiff/, args.join(" "));
    }
    const missing = await skiff(["service", "del", "default/none", "--file", file]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /service default\/none not found/);
    const noInput = await skiff(["service", "add", "-f", `${file}.nope`, "--file", file]);
    assert.equal(noInput.code, 1);
    assert.match(noInput.stderr, /cannot read/);
  });
});

Deno.test("skiff service on a corrupt file exits 1 with a clear message and never overwrites it", async () => {
  await withFile(async (file) => {
    const corrupt = '{"services": [{"name": "web", "ports": [{"port": 80}]},';
    await Deno.writeTextFile(file, corrupt);
    for (
      const [args, stdin] of [
        [["service", "list", "--file", file], undefined],
        [["service", "add", "-f", "-", "--file", file], JSON.stringify(WEB)],
        [["service", "del", "web", "--file", file], undefined],
      ] as const
    ) {
      const r = await skiff([...args], stdin);
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${file}: is not valid JSON`));
      assert.equal(await Deno.readTextFile(file), corrupt);
    }
  });
});

Deno.test("ten concurrent skiff service add calls all keep their Service", async () => {
  await withFile(async (file) => {
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        skiff(
          ["service", "add", "-f", "-", "--file", file],
          JSON.stringify(svc({ name: `s${i}`, clusterIP: `10.96.1.${i + 1}` })),
        )),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const listed = JSON.parse(
      (await skiff(["service", "list", "-o", "json", "--file", file])).stdout,
    );
    assert.deepEqual(
      listed.services.map((s: { name: string }) => s.name),
      Array.from({ length: 10 }, (_, i) => `s${i}`).sort(),
    );
  });
});
