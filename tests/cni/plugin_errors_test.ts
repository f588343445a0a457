/**
 * Malformed input to the skiff plugin, generated as a table (≥ 500 cases): broken JSON, missing
 * and wrong-typed fields, unknown versions, bad CNI_* variables, a missing netns, missing or
 * unreadable subnet.env. Each must answer the spec's error JSON with the right code, exit
 * non-zero and leave nothing behind. Most run in-process; a sample runs through the real shim.
 */

import assert from "node:assert/strict";
import { runPlugin } from "../../agent/cni/plugin.ts";
import { createCniNode, type NodeSnapshot } from "./cni_node.ts";

interface Case {
  readonly label: string;
  readonly env: Record<string, string>;
  readonly stdin: string;
  readonly code: number;
}

function baseConf(node: { subnetFile: string; dataDir: string; ipamDataDir: string }) {
  return {
    cniVersion: "1.0.0",
    name: "skiff",
    type: "skiff",
    subnetFile: node.subnetFile,
    dataDir: node.dataDir,
    ipamDataDir: node.ipamDataDir,
    delegate: { hairpinMode: true },
  } as Record<string, unknown>;
}

const PREV = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "eth0", sandbox: "/x" }],
  ips: [{ address: "10.244.1.2/24", interface: 0 }],
};

function generate(
  node: { subnetFile: string; dataDir: string; ipamDataDir: string; binDir: string },
  netns: string,
): Case[] {
  const cases: Case[] = [];
  const conf = baseConf(node);
  const envFor = (command: string): Record<string, string> => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: "c0ffee",
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: node.binDir,
  });
  const text = (c: Record<string, unknown>) => JSON.stringify(c);
  const withField = (key: string, value: unknown, command = "ADD") => {
    const c: Record<string, unknown> = { ...conf };
    if (value === undefined) delete c[key];
    else c[key] = value;
    if (command === "CHECK" && key !== "prevResult") c.prevResult ??= PREV;
    if (command === "GC" && key !== "cni.dev/valid-attachments") {
      c["cni.dev/valid-attachments"] = [];
    }
    if ((command === "GC" || command === "STATUS") && key !== "cniVersion") c.cniVersion = "1.1.0";
    return text(c);
  };

  // 1. broken JSON: every proper prefix of a valid config, and garbage (code 6)
  const valid = text(conf);
  for (let i = 0; i < valid.length; i += 2) {
    for (const command of ["ADD", "DEL"]) {
      cases.push({
        label: `prefix ${i} ${command}`,
        env: envFor(command),
        stdin: valid.slice(0, i),
        code: 6,
      });
    }
  }
  for (const junk of ["", " ", "null", "[]", "42", '"skiff"', "true", "{", "}", "{]", "\u0000"]) {
    for (const command of ["ADD", "DEL", "CHECK"]) {
      cases.push({
        label: `junk ${JSON.stringify(junk)} ${command}`,
        env: envFor(command),
        stdin: junk,
        code: 6,
      });
    }
  }
  // 2. wrong JSON types (6), for each command that reads the field
  const typed: Record<string, unknown[]> = {
    name: [42, true, [], {}],
    cniVersion: [1, false, ["1.0.0"], {}],
    type: [7, [], {}],
    subnetFile: [1, [], {}, true],
    dataDir: [1, [], {}],
    ipamDataDir: [2, []],
    delegate: ["bridge", 5, [], true],
    prevResult: ["x", 3, []],
    runtimeConfig: ["x", 1, []],
    capabilities: [1, "x"],
    args: [[], 9],
  };
  for (const [key, values] of Object.entries(typed)) {
    for (const value of values) {
      for (const command of ["ADD", "DEL", "CHECK"]) {
        cases.push({
          label: `${key}=${JSON.stringify(value)} ${command}`,
          env: envFor(command),
          stdin: withField(key, value, command),
          code: 6,
        });
      }
    }
  }
  // 3. missing required fields (7)
  for (const key of ["name", "cniVersion", "type"]) {
    for (const command of ["ADD", "DEL", "CHECK"]) {
      for (const value of [undefined, null, ""]) {
        cases.push({
          label: `${key} ${String(value)} ${command}`,
          env: envFor(command),
          stdin: withField(key, value, command),
          code: 7,
        });
      }
    }
  }
  // 4. invalid values (7), and a wrong-typed delegate field (6)
  const invalid: [string, unknown, number][] = [
    ["name", "-bad", 7],
    ["name", "has space", 7],
    ["name", "a/b", 7],
    ["name", ".dot", 7],
    ["subnetFile", "relative/subnet.env", 7],
    ["dataDir", "var/lib", 7],
    ["ipamDataDir", "x", 7],
    ["delegate", { name: "other" }, 7],
    ["delegate", { ipam: { type: "host-local" } }, 7],
    ["delegate", { name: "x", ipam: {} }, 7],
    ["delegate", { type: "../bridge" }, 7],
    ["delegate", { type: 5 }, 6],
    ["delegate", { bridge: "a-very-long-bridge-name" }, 7],
    ["delegate", { bridge: "" }, 7],
    ["delegate", { bridge: 3 }, 6],
  ];
  for (const [key, value, code] of invalid) {
    for (const command of ["ADD", "DEL", "CHECK"]) {
      cases.push({
        label: `${key}=${JSON.stringify(value)} ${command}`,
        env: envFor(command),
        stdin: withField(key, value, command),
        code,
      });
    }
  }
  // 5. unknown or too old versions (1)
  for (
    const v of ["0.1.0", "0.2.0", "0.5.0", "1.2.0", "2.0.0", "abc", "1.0", "v1.0.0", "1.0.0.0"]
  ) {
    for (const command of ["ADD", "DEL", "CHECK", "STATUS", "GC"]) {
      cases.push({
        label: `cniVersion ${v} ${command}`,
        env: envFor(command),
        stdin: withField("cniVersion", v, command),
        code: 1,
      });
    }
  }
  for (const v of ["0.3.0", "0.3.1"]) {
    cases.push({
      label: `CHECK at ${v}`,
      env: envFor("CHECK"),
      stdin: withField("cniVersion", v),
      code: 1,
    });
  }
  for (const v of ["0.3.1", "0.4.0", "1.0.0"]) {
    for (const command of ["STATUS", "GC"]) {
      const c = { ...conf, cniVersion: v, "cni.dev/valid-attachments": [] };
      cases.push({ label: `${command} at ${v}`, env: envFor(command), stdin: text(c), code: 1 });
    }
  }
  // 6. environment (4)
  const required: Record<string, string[]> = {
    ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    DEL: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
    GC: ["CNI_PATH"],
  };
  for (const [command, vars] of Object.entries(required)) {
    for (const v of vars) {
      for (const value of [undefined, ""]) {
        const env = envFor(command);
        if (value === undefined) delete env[v];
        else env[v] = value;
        cases.push({
          label: `${command} without ${v}`,
          env,
          stdin: withField("x", 1, command),
          code: 4,
        });
      }
    }
  }
  for (const cmd of [undefined, "", "add", "ADDX", "DELETE", "check", "version ", "KILL"]) {
    const env = envFor("ADD");
    if (cmd === undefined) delete env.CNI_COMMAND;
    else env.CNI_COMMAND = cmd;
    cases.push({ label: `CNI_COMMAND ${String(cmd)}`, env, stdin: valid, code: 4 });
  }
  for (const id of ["-abc", "_x", ".x", "a/b", "a b", "a:b", "a\nb", "é"]) {
    for (const command of ["ADD", "DEL", "CHECK"]) {
      cases.push({
        label: `container id ${JSON.stringify(id)} ${command}`,
        env: { ...envFor(command), CNI_CONTAINERID: id },
        stdin: withField("x", 1, command),
        code: 4,
      });
    }
  }
  for (const ifName of ["a/b", "waytoolonginterface", ".", "..", "a b", "a:b", "tab\tx"]) {
    for (const command of ["ADD", "DEL", "CHECK"]) {
      cases.push({
        label: `ifname ${JSON.stringify(ifName)} ${command}`,
        env: { ...envFor(command), CNI_IFNAME: ifName },
        stdin: withField("x", 1, command),
        code: 4,
      });
    }
  }
  for (const args of ["novalue", "A=1;broken", ";", "A=1;;B=2", "=x"]) {
    for (const command of ["ADD", "DEL"]) {
      cases.push({
        label: `CNI_ARGS ${args} ${command}`,
        env: { ...envFor(command), CNI_ARGS: args },
        stdin: valid,
        code: 4,
      });
    }
  }
  // 7. a netns that does not exist (3)
  for (const ns of ["/run/netns/sk-none", "/proc/999999999/ns/net", "/nonexistent/ns"]) {
    for (const command of ["ADD", "CHECK"]) {
      cases.push({
        label: `netns ${ns} ${command}`,
        env: { ...envFor(command), CNI_NETNS: ns },
        stdin: withField("x", 1, command),
        code: 3,
      });
    }
  }
  // 8. prevResult of a wrong shape for CHECK (6), none at all (7)
  for (
    const prev of [
      { ips: "x" },
      { interfaces: 3 },
      { ips: [{}] },
      { routes: [{ gw: "1.2.3.4" }] },
      {
        interfaces: [{ mac: "x" }],
      },
    ]
  ) {
    cases.push({
      label: `prevResult ${JSON.stringify(prev)}`,
      env: envFor("CHECK"),
      stdin: withField("prevResult", prev, "CHECK"),
      code: 6,
    });
  }
  cases.push({
    label: "CHECK without prevResult",
    env: envFor("CHECK"),
    stdin: text({ ...conf }),
    code: 7,
  });
  // 9. GC attachments (7 missing, 6 wrong type)
  cases.push({
    label: "GC without attachments",
    env: envFor("GC"),
    stdin: text({ ...conf, cniVersion: "1.1.0" }),
    code: 7,
  });
  for (
    const list of ["x", 5, {}, [1], [{ containerID: 1, ifname: "eth0" }], [{ containerID: "a" }]]
  ) {
    cases.push({
      label: `GC attachments ${JSON.stringify(list)}`,
      env: envFor("GC"),
      stdin: withField("cni.dev/valid-attachments", list, "GC"),
      code: 6,
    });
  }
  return cases;
}

function assertErrorJson(label: string, stdout: string, code: number): void {
  let answer: Record<string, unknown>;
  try {
    answer = JSON.parse(stdout);
  } catch {
    assert.fail(`${label}: stdout is not JSON: ${stdout}`);
  }
  assert.equal(answer.code, code, `${label}: ${stdout}`);
  assert.equal(typeof answer.msg, "string", `${label}: no msg`);
  assert.ok((answer.msg as string).length > 0, `${label}: empty msg`);
  assert.equal(typeof answer.cniVersion, "string", `${label}: no cniVersion`);
}

Deno.test("malformed requests get the spec's error JSON and code and leave nothing behind", async () => {
  await using node = await createCniNode();
  const netns = await node.addNetns("p0");
  const before: NodeSnapshot = await node.snapshot();
  const cases = generate(node, netns);
  assert.ok(cases.length >= 500, `only ${cases.length} cases`);
  for (const c of cases) {
    const out = await runPlugin({ env: c.env, stdin: c.stdin });
    assert.equal(out.exitCode, 1, `${c.label}: exit code`);
    assertErrorJson(c.label, out.stdout, c.code);
  }
  assert.deepEqual(await node.snapshot(), before);
  // a sample of the same table through the real shim, in the node namespace
  for (let i = 0; i < cases.length; i += 23) {
    const c = cases[i];
    const out = await node.plugin(c.env, c.stdin).catch((e) => assert.fail(`${c.label}: ${e}`));
    assert.notEqual(out.code, 0, `${c.label}: shim exit code`);
    assertErrorJson(`${c.label} (shim)`, out.stdout, c.code);
  }
  assert.deepEqual(await node.snapshot(), before);
});

Deno.test("subnet.env missing is try-again-later (11), unreadable is I/O (5), broken is 100", async () => {
  await using node = await createCniNode();
  const netns = await node.addNetns("p0");
  const before = await node.snapshot();
  const env = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "c1",
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: node.binDir,
  };
  const conf = (subnetFile: string, v = "1.0.0") =>
    JSON.stringify({ ...baseConf(node), subnetFile, cniVersion: v });
  const missing = `${node.root}/nothing/subnet.env`;
  const dir = `${node.root}/a-directory`;
  await Deno.mkdir(dir);
  const broken: string[] = [
    "FLANNEL_NETWORK=10.244.0.0/16\n",
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n",
    "FLANNEL_NETWORK=10.244.0.0/33\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n",
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=banana\nFLANNEL_MTU=1450\n",
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=big\n",
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=maybe\n",
    "garbage line\n",
  ];
  let n = 0;
  for (const version of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    for (const command of ["ADD", "CHECK"]) {
      const e = { ...env, CNI_COMMAND: command };
      const body = (p: string) => {
        const c = JSON.parse(conf(p, version));
        if (command === "CHECK") c.prevResult = PREV;
        return JSON.stringify(c);
      };
      if (command === "CHECK" && version === "0.3.1") continue;
      let out = await runPlugin({ env: e, stdin: body(missing) });
      assertErrorJson(`missing ${version} ${command}`, out.stdout, 11);
      out = await runPlugin({ env: e, stdin: body(dir) });
      assertErrorJson(`directory ${version} ${command}`, out.stdout, 5);
      for (const text of broken) {
        const path = `${node.root}/broken${n++}.env`;
        await Deno.writeTextFile(path, text);
        out = await runPlugin({ env: e, stdin: body(path) });
        assert.equal(out.exitCode, 1);
        assertErrorJson(`broken ${JSON.stringify(text)}`, out.stdout, 100);
      }
    }
  }
  // STATUS says "not available" (50) for the same conditions, and succeeds on a good file
  for (const path of [missing, dir, `${node.root}/broken0.env`]) {
    const out = await runPlugin({
      env: { CNI_COMMAND: "STATUS", CNI_PATH: node.binDir },
      stdin: conf(path, "1.1.0"),
    });
    assert.equal(out.exitCode, 1);
    assertErrorJson(`STATUS ${path}`, out.stdout, 50);
  }
  const ok = await runPlugin({
    env: { CNI_COMMAND: "STATUS", CNI_PATH: node.binDir },
    stdin: conf(node.subnetFile, "1.1.0"),
  });
  assert.deepEqual(ok, { exitCode: 0, stdout: "", stderr: "" });
  // DEL needs no subnet.env (it uses the saved delegate): unknown container = success
  const del = await runPlugin({ env: { ...env, CNI_COMMAND: "DEL" }, stdin: conf(missing) });
  assert.equal(del.exitCode, 0, del.stdout);
  assert.deepEqual(await node.snapshot(), before);
});

Deno.test("a delegate option the bridge rejects fails ADD and is undone", async () => {
  await using node = await createCniNode();
  const netns = await node.addNetns("p0");
  const before = await node.snapshot();
  for (const delegate of [{ hairpinMode: "yes" }, { mtu: "big" }, { type: "nosuchplugin" }]) {
    const out = await node.plugin({
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "c2",
      CNI_NETNS: netns,
      CNI_IFNAME: "eth0",
      CNI_PATH: node.binDir,
    }, JSON.stringify({ ...baseConf(node), delegate }));
    assert.notEqual(out.code, 0, JSON.stringify(delegate));
    const answer = JSON.parse(out.stdout);
    assert.ok(answer.code > 0 && typeof answer.msg === "string", out.stdout);
    assert.deepEqual(await node.snapshot(), before, JSON.stringify(delegate));
  }
});

Deno.test("a second ADD of one container is refused (103) and the first stays intact", async () => {
  await using node = await createCniNode();
  const netns = await node.addNetns("p0");
  const env = (command: string) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: "twice",
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: node.binDir,
  });
  const conf = JSON.stringify(baseConf(node));
  const first = await node.plugin(env("ADD"), conf);
  assert.equal(first.code, 0, first.stdout);
  const mid = await node.snapshot();
  const second = await node.plugin(env("ADD"), conf);
  assertErrorJson("second ADD", second.stdout, 103);
  assert.deepEqual(await node.snapshot(), mid);
  const check = await node.plugin(
    env("CHECK"),
    JSON.stringify({ ...baseConf(node), prevResult: JSON.parse(first.stdout) }),
  );
  assert.equal(check.code, 0, check.stdout);
  // a corrupt saved delegate does not block DEL: it is rebuilt from subnet.env
  await Deno.writeTextFile(`${node.dataDir}/twice`, "{torn");
  const del = await node.plugin(env("DEL"), conf);
  assert.equal(del.code, 0, del.stdout);
  const after = await node.snapshot();
  assert.deepEqual(after.delegates, []);
  assert.deepEqual(after.allocations, []);
});
