/**
 * The Go loader through LoaderClient on the real kernel, in lab namespaces and cgroups: load
 * and pin, tcx/cgroup/XDP attach and detach, pinned maps surviving a loader restart, counters
 * moved by real traffic (read with bpftool, independent of the FFI bridge), structured errors.
 */
import assert from "node:assert/strict";
import { LoaderClient, LoaderError } from "../agent/bpf/loader_client.ts";
import { run } from "../agent/net/exec.ts";
import { createLab, findLeftovers, type LabHost, type LabNode } from "./lab/lab.ts";
import { buildForTests, dumpPinnedMap, hexArgs, u64 } from "./fixtures/fixtures.ts";

const built = await buildForTests();

function start(): Promise<LoaderClient> {
  return LoaderClient.start({ path: built.loader });
}

/** Sum over CPUs of (packets, bytes) in counter_totals[slot]. */
async function totals(pinDir: string, slot: number): Promise<{ packets: bigint; bytes: bigint }> {
  const entry = (await dumpPinnedMap(`${pinDir}/counter_totals`)).find((e) => e.key[0] === slot)!;
  let packets = 0n, bytes = 0n;
  for (const v of entry.values) {
    packets += u64(v, 0);
    bytes += u64(v, 8);
  }
  return { packets, bytes };
}

/** counter_by_source[{saddr, proto}].packets (0 when absent). */
async function sourcePackets(pinDir: string, ip: string, proto: number): Promise<bigint> {
  const key = [...ip.split(".").map(Number), proto, 0, 0, 0];
  const entry = (await dumpPinnedMap(`${pinDir}/counter_by_source`)).find((e) =>
    e.key.every((b, i) => b === key[i])
  );
  return entry ? u64(entry.values[0], 0) : 0n;
}

/** hook_calls[slot] of the hooks.c fixture. */
async function hookCalls(pinDir: string, slot: number): Promise<bigint> {
  const entry = (await dumpPinnedMap(`${pinDir}/hook_calls`)).find((e) => e.key[0] === slot)!;
  return u64(entry.values[0], 0);
}

async function ping(from: LabHost, to: string, count = 3): Promise<void> {
  await from.run(["ping", "-c", String(count), "-i", "0.05", "-W", "2", to]);
}

async function ifindexOf(node: LabNode, iface: string): Promise<number> {
  const out = await node.run(["ip", "-j", "link", "show", iface]);
  return JSON.parse(out.stdout)[0].ifindex;
}

async function rejection(promise: Promise<unknown>): Promise<LoaderError> {
  const error = await promise.then(() => undefined, (e) => e);
  assert.ok(error instanceof LoaderError, `expected a LoaderError, got ${error}`);
  return error;
}

/** Sends raw lines to a fresh loader, closes stdin, and returns its exit code and responses. */
/** A response as it is on the wire. */
interface RawResponse {
  v: number;
  id: number | null;
  ok: boolean;
  error?: { op: string; code: string; message: string };
}

async function rawExchange(lines: string[]): Promise<{ code: number; responses: RawResponse[] }> {
  const child = new Deno.Command(built.loader, {
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(lines.map((l) => l + "\n").join("")));
  await writer.close();
  const result = await child.output();
  const text = new TextDecoder().decode(result.stdout).trim();
  return { code: result.code, responses: text ? text.split("\n").map((l) => JSON.parse(l)) : [] };
}

Deno.test("hello reports protocol 1 and cilium/ebpf v0.22, and the loader exits 0 on stdin EOF", async () => {
  const client = await start();
  const hello = await client.hello();
  assert.equal(hello.protocol, 1);
  assert.match(hello.ebpf, /^v0\.22\./);
  assert.ok(hello.ops.includes("attach"));
  assert.equal(hello.pid, client.pid);
  await client.close();
  await client.close(); // idempotent
  const raw = await rawExchange(['{"v":1,"id":7,"op":"hello"}']);
  assert.equal(raw.code, 0);
  assert.deepEqual([raw.responses[0].id, raw.responses[0].ok], [7, true]);
  await rejection(client.hello()); // a closed client refuses clearly
});

Deno.test("load pins maps by name and programs; a restarted loader reuses the maps with their contents", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const pinDir = lab.nodes[0].pinDir;
  const key = Uint8Array.of(10, 1, 2, 3, 17, 0, 0, 0); // 10.1.2.3, UDP
  const value = new Uint8Array(16);
  new DataView(value.buffer).setBigUint64(0, 1234n, true);
  new DataView(value.buffer).setBigUint64(8, 99_000n, true);
  {
    await using loader = await start();
    const loaded = await loader.load({ object: built.counter, pinDir });
    assert.deepEqual(
      loaded.maps.map((m) => [m.name, m.type, m.keySize, m.valueSize, m.maxEntries, m.reused]),
      [
        ["counter_by_source", "Hash", 8, 16, 4096, false],
        ["counter_totals", "PerCPUArray", 4, 16, 2, false],
      ],
    );
    assert.deepEqual(loaded.programs.map((p) => [p.name, p.type, p.pin]), [
      ["count_egress", "SchedCLS", `${pinDir}/progs/count_egress`],
      ["count_ingress", "SchedCLS", `${pinDir}/progs/count_ingress`],
    ]);
    await run([
      "bpftool",
      "map",
      "update",
      "pinned",
      `${pinDir}/counter_by_source`,
      "key",
      "hex",
      ...hexArgs(key),
      "value",
      "hex",
      ...hexArgs(value),
    ]);
  }
  // A new loader process, the same object again: the maps are reused, the entry is still there.
  const mapIdBefore = JSON.parse(
    (await run(["bpftool", "map", "show", "pinned", `${pinDir}/counter_by_source`, "-j"])).stdout,
  ).id;
  await using loader = await start();
  const again = await loader.load({ object: built.counter, pinDir });
  assert.deepEqual(again.maps.map((m) => m.reused), [true, true]);
  const mapIdAfter = JSON.parse(
    (await run(["bpftool", "map", "show", "pinned", `${pinDir}/counter_by_source`, "-j"])).stdout,
  ).id;
  assert.equal(mapIdAfter, mapIdBefore);
  assert.equal(await sourcePackets(pinDir, "10.1.2.3", 17), 1234n);
  const listed = await loader.list(pinDir);
  assert.deepEqual(listed.maps.map((m) => m.name), ["counter_by_source", "counter_totals"]);
  assert.deepEqual(listed.programs.map((p) => p.name), ["count_egress", "count_ingress"]);
  assert.deepEqual(listed.links, []);
});

Deno.test("maxEntries sizes a new map; a pinned map of another size is an 'incompatible' error", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const pinDir = lab.nodes[0].pinDir;
  await using loader = await start();
  const loaded = await loader.load({
    object: built.counter,
    pinDir,
    maxEntries: { counter_by_source: 128 },
  });
  assert.equal(loaded.maps.find((m) => m.name === "counter_by_source")!.maxEntries, 128);
  const error = await rejection(
    loader.load({ object: built.counter, pinDir, maxEntries: { counter_by_source: 256 } }),
  );
  assert.equal(error.code, "incompatible");
  assert.equal(error.op, "load");
  const unknown = await rejection(
    loader.load({ object: built.counter, pinDir, maxEntries: { no_such_map: 1 } }),
  );
  assert.equal(unknown.code, "bad_request");
  assert.equal(unknown.object, "no_such_map");
});

Deno.test("tc: a tcx link in a lab netns counts real traffic until it is detached", async () => {
  let prefix = "";
  {
    await using lab = await createLab({ nodes: 2, outside: false });
    prefix = lab.prefix;
    const [client, server] = lab.nodes;
    const pinDir = server.pinDir;
    await using loader = await start();
    await loader.load({ object: built.counter, pinDir });
    const attached = await loader.attach({
      pinDir,
      program: "count_ingress",
      kind: "tc",
      iface: server.uplink,
      netns: server.nsPath,
      direction: "ingress",
    });
    assert.equal(attached.link, `count_ingress-tc-ingress-eth0@${server.name}`);
    assert.equal(attached.pin, `${pinDir}/links/${attached.link}`);
    assert.equal(attached.target.kind, "tc");
    assert.equal(attached.target.direction, "ingress");
    assert.equal(attached.target.ifindex, await ifindexOf(server, server.uplink));
    assert.equal(attached.target.programName, "count_ingress");
    assert.deepEqual([attached.replaced, attached.unchanged], [false, false]);

    // Attaching the same again converges: nothing changes.
    const same = await loader.attach({
      pinDir,
      program: "count_ingress",
      kind: "tc",
      iface: server.uplink,
      netns: server.nsPath,
      direction: "ingress",
    });
    assert.deepEqual([same.unchanged, same.target.linkId], [true, attached.target.linkId]);

    // The link outlives the loader process that made it.
    await loader.close();
    await using loader2 = await start();
    const listed = await loader2.list(pinDir);
    assert.deepEqual(listed.links.map((l) => [l.name, l.kind, l.direction, l.ifindex]), [
      [attached.link, "tc", "ingress", attached.target.ifindex],
    ]);

    await ping(client, server.ip, 3);
    const detached = await loader2.detach({ pinDir, link: attached.link });
    assert.deepEqual(detached, { link: attached.link, detached: true });
    assert.deepEqual((await loader2.list(pinDir)).links, []);
    // Read after the detach: other packets (ARP, IPv6 ND) may arrive at any time.
    const counted = await totals(pinDir, 0);
    assert.ok(counted.packets >= 3n, `ingress packets ${counted.packets}`);
    assert.ok(counted.bytes >= 3n * 98n, `ingress bytes ${counted.bytes}`); // ICMP echo: 98 B
    assert.equal((await totals(pinDir, 1)).packets, 0n); // nothing on egress
    assert.ok((await sourcePackets(pinDir, client.ip, 1)) >= 3n);

    await ping(client, server.ip, 2);
    assert.equal((await totals(pinDir, 0)).packets, counted.packets, "counted after detach");
    // Detaching again is not an error.
    assert.equal((await loader2.detach({ pinDir, link: attached.link })).detached, false);
  }
  assert.deepEqual(await findLeftovers(prefix), {
    namespaces: [],
    cgroups: [],
    pins: [],
    processes: [],
  });
});

Deno.test("tc: attaching another program under an existing link name swaps it in place", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  await using loader = await start();
  await loader.load({ object: built.counter, pinDir: node.pinDir });
  const base = {
    pinDir: node.pinDir,
    kind: "tc",
    iface: node.uplink,
    netns: node.nsPath,
    direction: "ingress",
    link: "counter",
  } as const;
  const first = await loader.attach({ ...base, program: "count_ingress" });
  const swapped = await loader.attach({ ...base, program: "count_egress" });
  assert.equal(swapped.replaced, true);
  assert.equal(swapped.target.linkId, first.target.linkId);
  assert.equal(swapped.target.programName, "count_egress");
  // The same name on another hook is a conflict, not a silent move.
  const conflict = await rejection(
    loader.attach({ ...base, program: "count_egress", direction: "egress" }),
  );
  assert.equal(conflict.code, "conflict");
  assert.equal(conflict.errno, "EEXIST");
});

Deno.test("tc: the counter hands packets on (tcx next), so a second program on the hook still runs", async () => {
  await using lab = await createLab({ nodes: 2, outside: false });
  const [client, server] = lab.nodes;
  await using loader = await start();
  await loader.load({ object: built.counter, pinDir: server.pinDir });
  const hook = {
    pinDir: server.pinDir,
    kind: "tc",
    iface: server.uplink,
    netns: server.nsPath,
    direction: "ingress",
  } as const;
  // count_egress counts into the egress slot wherever it is attached: here, second on ingress.
  const first = await loader.attach({ ...hook, program: "count_ingress", link: "first" });
  const second = await loader.attach({ ...hook, program: "count_egress", link: "second" });
  assert.notEqual(first.target.linkId, second.target.linkId);
  assert.deepEqual((await loader.list(server.pinDir)).links.map((l) => l.name), [
    "first",
    "second",
  ]);
  await ping(client, server.ip, 3);
  await loader.detach({ pinDir: server.pinDir, link: "first" });
  await loader.detach({ pinDir: server.pinDir, link: "second" });
  assert.ok((await totals(server.pinDir, 0)).packets >= 3n);
  assert.ok((await totals(server.pinDir, 1)).packets >= 3n, "the second program did not run");
});

Deno.test("cgroup: the four socket hooks attach to a lab cgroup child, run, and detach", async () => {
  await using lab = await createLab({ nodes: 2, outside: false });
  const [node, peer] = lab.nodes;
  const pinDir = node.pinDir;
  await using loader = await start();
  await loader.load({ object: built.hooks, pinDir });
  const hooks = [
    ["connect4", "on_connect4"],
    ["sendmsg4", "on_sendmsg4"],
    ["recvmsg4", "on_recvmsg4"],
    ["getpeername4", "on_getpeername4"],
  ] as const;
  const links: string[] = [];
  for (const [hook, program] of hooks) {
    const result = await loader.attach({
      pinDir,
      program,
      kind: "cgroup",
      cgroup: node.cgroup,
      hook,
    });
    assert.equal(result.target.kind, "cgroup");
    assert.equal(result.target.hook, hook);
    assert.equal(result.target.cgroupId, (await Deno.stat(node.cgroup)).ino);
    links.push(result.link);
  }
  const shown = JSON.parse((await run(["bpftool", "cgroup", "show", node.cgroup, "-j"])).stdout);
  assert.deepEqual(
    shown.map((p: { attach_type: string }) => p.attach_type).sort(),
    // bpftool's names for connect4, getpeername4, recvmsg4, sendmsg4
    [
      "cgroup_inet4_connect",
      "cgroup_inet4_getpeername",
      "cgroup_udp4_recvmsg",
      "cgroup_udp4_sendmsg",
    ],
  );

  // A UDP connect from a process in the cgroup (inside the node's netns) runs connect4.
  const udpConnect = async () => {
    const child = lab.spawn(
      node,
      ["bash", "-c", `echo probe > /dev/udp/${peer.ip}/9`],
      { cgroup: node.cgroup, stdout: "null", stderr: "null" },
    );
    assert.equal((await child.status).code, 0);
  };
  await udpConnect();
  const calls = await hookCalls(pinDir, 0);
  assert.ok(calls >= 1n, `connect4 calls ${calls}`);

  for (const link of links) {
    assert.equal((await loader.detach({ pinDir, link })).detached, true);
  }
  const after = (await run(["bpftool", "cgroup", "show", node.cgroup, "-j"])).stdout.trim();
  assert.deepEqual(after ? JSON.parse(after) : [], []);
  await udpConnect();
  assert.equal(await hookCalls(pinDir, 0), calls, "connect4 ran after detach");
});

Deno.test("cgroup: the cgroup2 mount root is refused unless allowCgroupRoot is set", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const pinDir = lab.nodes[0].pinDir;
  await using loader = await start();
  await loader.load({ object: built.hooks, pinDir });
  const error = await rejection(loader.attach({
    pinDir,
    program: "on_connect4",
    kind: "cgroup",
    cgroup: "/sys/fs/cgroup/unified",
    hook: "connect4",
  }));
  assert.equal(error.code, "bad_request");
  assert.match(error.message, /mount root/);
  assert.deepEqual((await loader.list(pinDir)).links, []);
});

Deno.test("xdp: a pinned XDP link runs on a lab interface and detaches", async () => {
  await using lab = await createLab({ nodes: 2, outside: false });
  const [client, server] = lab.nodes;
  await using loader = await start();
  await loader.load({ object: built.hooks, pinDir: server.pinDir });
  const attached = await loader.attach({
    pinDir: server.pinDir,
    program: "xdp_pass",
    kind: "xdp",
    iface: server.uplink,
    netns: server.nsPath,
  });
  assert.equal(attached.target.kind, "xdp");
  assert.equal(attached.target.ifindex, await ifindexOf(server, server.uplink));
  const linkInfo = JSON.parse(
    (await server.run(["ip", "-j", "link", "show", server.uplink])).stdout,
  );
  assert.ok(linkInfo[0].xdp, "ip link shows no XDP program");
  await ping(client, server.ip, 2);
  assert.ok((await hookCalls(server.pinDir, 4)) >= 2n);
  assert.equal(
    (await loader.detach({ pinDir: server.pinDir, link: attached.link })).detached,
    true,
  );
  const after = JSON.parse((await server.run(["ip", "-j", "link", "show", server.uplink])).stdout);
  assert.equal(after[0].xdp, undefined);
});

Deno.test("bad inputs give structured errors: missing object, pin dir off bpffs, verifier rejection", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  await using loader = await start();

  const missing = await rejection(
    loader.load({ object: `/nonexistent/${lab.prefix}.o`, pinDir: node.pinDir }),
  );
  assert.deepEqual(
    [missing.op, missing.object, missing.code, missing.errno],
    ["load", `/nonexistent/${lab.prefix}.o`, "not_found", "ENOENT"],
  );

  const offBpffs = `/tmp/${lab.prefix}/pins`;
  const notBpffs = await rejection(loader.load({ object: built.counter, pinDir: offBpffs }));
  assert.deepEqual([notBpffs.code, notBpffs.object], ["not_bpffs", offBpffs]);
  assert.match(notBpffs.message, /not on a bpf filesystem/);
  await assert.rejects(Deno.stat(`/tmp/${lab.prefix}`), Deno.errors.NotFound); // nothing made

  const relative = await rejection(loader.load({ object: built.counter, pinDir: "pins" }));
  assert.equal(relative.code, "bad_request");

  const rejected = await rejection(loader.load({ object: built.badProg, pinDir: node.pinDir }));
  assert.equal(rejected.code, "verifier");
  assert.equal(rejected.op, "load");
  assert.equal(rejected.object, built.badProg);
  assert.ok(rejected.errno, "a verifier rejection carries the kernel's errno");
  assert.match(rejected.verifierLog ?? "", /invalid access to packet/);
  assert.match(rejected.message, /unchecked_read/);
  // Nothing was pinned for the rejected object: its map (created for this load) is gone too.
  const listed = await loader.list(node.pinDir);
  assert.deepEqual([listed.maps, listed.programs], [[], []]);
  // A pin dir the failed load had to create is not left behind either.
  const fresh = `${node.pinDir}/fresh`;
  await rejection(loader.load({ object: built.badProg, pinDir: fresh }));
  await assert.rejects(Deno.stat(fresh), Deno.errors.NotFound);
});

Deno.test("bad inputs give structured errors: attach targets that do not exist or do not fit", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  await using loader = await start();
  await loader.load({ object: built.counter, pinDir: node.pinDir });
  const tc = {
    pinDir: node.pinDir,
    program: "count_ingress",
    kind: "tc",
    iface: node.uplink,
    netns: node.nsPath,
    direction: "ingress",
  } as const;

  const noIface = await rejection(loader.attach({ ...tc, iface: "sknosuch0" }));
  assert.deepEqual([noIface.code, noIface.errno, noIface.object], [
    "not_found",
    "ENODEV",
    "sknosuch0",
  ]);
  const noNetns = await rejection(loader.attach({ ...tc, netns: `/run/netns/${lab.prefix}zz` }));
  assert.deepEqual([noNetns.code, noNetns.errno], ["not_found", "ENOENT"]);
  const noProgram = await rejection(loader.attach({ ...tc, program: "not_loaded" }));
  assert.deepEqual([noProgram.code, noProgram.object], ["not_found", "not_loaded"]);
  const wrongKind = await rejection(
    loader.attach({
      pinDir: node.pinDir,
      program: "count_ingress",
      kind: "xdp",
      iface: node.uplink,
      netns: node.nsPath,
    }),
  );
  assert.equal(wrongKind.code, "bad_request");
  assert.match(wrongKind.message, /SchedCLS/);
  const badDirection = await rejection(
    loader.request("attach", { ...tc, direction: "sideways" }),
  );
  assert.equal(badDirection.code, "bad_request");
  assert.match(badDirection.message, /direction "sideways"/);
  const typo = await rejection(loader.request("attach", { ...tc, ifname: "eth0" }));
  assert.equal(typo.code, "bad_request");
  assert.match(typo.message, /ifname/);
  // None of these left a link behind, and the loader still answers.
  assert.deepEqual((await loader.list(node.pinDir)).links, []);
});

Deno.test("bad inputs give structured errors: unknown op, bad JSON, wrong protocol version", async () => {
  const raw = await rawExchange([
    '{"v":1,"id":1,"op":"explode"}',
    "this is not json",
    '{"v":2,"id":3,"op":"hello"}',
    '{"id":4,"op":"hello"}',
    '{"v":1,"id":5,"op":"hello"}',
  ]);
  assert.equal(raw.code, 0);
  const [unknown, badJson, v2, noV, hello] = raw.responses;
  assert.deepEqual([unknown.id, unknown.ok, unknown.error!.code], [1, false, "unknown_op"]);
  assert.match(unknown.error!.message, /unknown op "explode" \(known: attach, detach/);
  assert.deepEqual([badJson.id, badJson.ok, badJson.error!.code], [null, false, "bad_json"]);
  assert.deepEqual([v2.id, v2.error!.code], [3, "bad_version"]);
  assert.deepEqual([noV.id, noV.error!.code], [4, "bad_version"]);
  assert.deepEqual([hello.id, hello.ok, hello.v], [5, true, 1]);

  // Through the client, an unknown op is a LoaderError too.
  await using loader = await start();
  const error = await rejection(loader.request("explode"));
  assert.equal(error.code, "unknown_op");
});

Deno.test("run_iter: the sock_destroy iterator destroys a listed connected UDP socket, in the netns it runs in", async () => {
  await using lab = await createLab({ nodes: 1, outside: false });
  const node = lab.nodes[0];
  await using loader = await start();
  await loader.load({ object: built.sockDestroy, pinDir: node.pinDir });
  // a connected UDP socket in the node's netns (connect sends nothing), waiting for an error
  const child = lab.spawn(node, [
    "/usr/bin/python3",
    "-c",
    `import socket, errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("192.168.100.1", 9999))
s.settimeout(15)
print(s.getsockname()[1], flush=True)
try:
    s.recv(64)
    print("no error")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))`,
  ]);
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await lines.read();
  const port = Number(String(first.value).trim());
  assert.ok(port > 0, `client printed ${first.value}`);

  const unlisted = await loader.runIter({
    pinDir: node.pinDir,
    program: "sock_destroy_udp",
    netns: node.nsPath,
  });
  assert.deepEqual([unlisted.bytes, unlisted.output], [0, ""], "nothing listed: nothing destroyed");
  // 192.168.100.1:9999/UDP (struct skiff_lb_backend: addr, port in network order, proto, 0)
  await run([
    "bpftool",
    "map",
    "update",
    "pinned",
    `${node.pinDir}/lb_sock_purge`,
    "key",
    "hex",
    ...hexArgs(Uint8Array.of(192, 168, 100, 1, 0x27, 0x0f, 17, 0)),
    "value",
    "1",
  ]);
  const here = await loader.runIter({ pinDir: node.pinDir, program: "sock_destroy_udp" });
  assert.equal(here.bytes, 0, "the loader's own netns does not hold the socket");
  const there = await loader.runIter({
    pinDir: node.pinDir,
    program: "sock_destroy_udp",
    netns: node.nsPath,
  });
  assert.equal(there.output, `${node.ip}:${port} 192.168.100.1:9999\n`);
  assert.equal(there.truncated, false);
  // the client exits right after its error line (or after its own 15 s timeout)
  let text = "";
  for (let r = await lines.read(); !r.done; r = await lines.read()) text += r.value;
  assert.equal(text.trim(), "ECONNABORTED", `client said ${JSON.stringify(text)}`);
  await lines.cancel().catch(() => {});

  // structured errors
  const bad = (fields: object) => rejection(loader.request("run_iter", fields));
  const noNetns = await bad({
    pinDir: node.pinDir,
    program: "sock_destroy_udp",
    netns: `/run/netns/${lab.prefix}zz`,
  });
  assert.deepEqual([noNetns.code, noNetns.errno], ["not_found", "ENOENT"]);
  const noProgram = await bad({ pinDir: node.pinDir, program: "not_loaded" });
  assert.deepEqual([noProgram.code, noProgram.object], ["not_found", "not_loaded"]);
  await loader.load({ object: built.counter, pinDir: node.pinDir });
  const notIter = await bad({ pinDir: node.pinDir, program: "count_ingress" });
  assert.equal(notIter.code, "bad_request");
  assert.match(notIter.message, /SchedCLS/);
  const badMax = await bad({ pinDir: node.pinDir, program: "sock_destroy_udp", maxBytes: -1 });
  assert.equal(badMax.code, "bad_request");
});
