/**
 * A small traffic peer for the Service suites, run inside lab namespaces (and cgroups):
 * `server TCP|UDP <port> <tag>` answers every line/datagram with "<tag> <peer address>";
 * `client <host> <port>` reads commands on stdin and prints one JSON line per command:
 *   many TCP|UDP <n>   n fresh connections/sockets, one request each → {tags, peers, seen,
 *                      failures} (seen: the client address the server saw, TCP only)
 *   open               one persistent TCP connection → {peer} (what getpeername says)
 *   send               a request on it → {tag, ok}
 *   usend              a datagram on one persistent UDP socket → {tag, from, ok}
 *   loop <ms>          fresh TCP connections back to back for ms → {ok, failed}
 *   bench <ms>         like loop, timing each connect → {ok, failed, rate, p50Us, p99Us,
 *                      samplesUs}
 *   keepalive <ms>     requests on one connection for ms → {ok, rate}
 * Every wait has a timeout, so a broken path prints a failure instead of hanging.
 */
const TIMEOUT_MS = 1500;
const enc = new TextEncoder();
const dec = new TextDecoder();

function withTimeout<T>(p: Promise<T>, ms = TIMEOUT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error("timeout")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function readLine(conn: Deno.TcpConn): Promise<string> {
  const buf = new Uint8Array(512);
  let text = "";
  while (!text.includes("\n")) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += dec.decode(buf.subarray(0, n));
  }
  return text.trim();
}

async function server(proto: string, port: number, tag: string): Promise<void> {
  if (proto === "UDP") {
    const sock = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port });
    for (;;) {
      const [, addr] = await sock.receive();
      const a = addr as Deno.NetAddr;
      await sock.send(enc.encode(`${tag} ${a.hostname}:${a.port}`), addr);
    }
  }
  const listener = Deno.listen({ hostname: "0.0.0.0", port });
  for await (const conn of listener) {
    (async () => {
      const a = conn.remoteAddr as Deno.NetAddr;
      const buf = new Uint8Array(512);
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          const lines = dec.decode(buf.subarray(0, n)).split("\n").length - 1;
          for (let i = 0; i < lines; i++) {
            await conn.write(enc.encode(`${tag} ${a.hostname}:${a.port}\n`));
          }
        }
      } catch { /* client went away */ }
      try {
        conn.close();
      } catch { /* closed */ }
    })();
  }
}

async function tcpOnce(
  host: string,
  port: number,
): Promise<{ tag: string; peer: string; seen: string }> {
  const conn = await withTimeout(Deno.connect({ hostname: host, port }));
  try {
    const r = conn.remoteAddr as Deno.NetAddr;
    await conn.write(enc.encode("x\n"));
    const line = await withTimeout(readLine(conn));
    if (!line) throw new Error("empty reply");
    const [tag, seen] = line.split(" ");
    return { tag, peer: `${r.hostname}:${r.port}`, seen };
  } finally {
    conn.close();
  }
}

async function udpOnce(
  sock: Deno.DatagramConn,
  host: string,
  port: number,
): Promise<{ tag: string; from: string }> {
  await sock.send(enc.encode("x"), { transport: "udp", hostname: host, port });
  const [data, addr] = await withTimeout(sock.receive());
  const a = addr as Deno.NetAddr;
  return { tag: dec.decode(data).split(" ")[0], from: `${a.hostname}:${a.port}` };
}

function udpSocket(): Deno.DatagramConn {
  return Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
}

async function client(host: string, port: number): Promise<void> {
  const out = (v: unknown) => Deno.stdout.writeSync(enc.encode(JSON.stringify(v) + "\n"));
  let held: Deno.TcpConn | undefined;
  let udp: Deno.DatagramConn | undefined;
  let pending = "";
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null) return;
    pending += dec.decode(buf.subarray(0, n));
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const [cmd, a, b] = pending.slice(0, nl).trim().split(/\s+/);
      pending = pending.slice(nl + 1);
      try {
        if (cmd === "many") {
          const tags: string[] = [];
          const peers: string[] = [];
          const seen: string[] = [];
          let failures = 0;
          for (let i = 0; i < Number(b); i++) {
            try {
              if (a === "TCP") {
                const r = await tcpOnce(host, port);
                tags.push(r.tag);
                peers.push(r.peer);
                seen.push(r.seen);
              } else {
                const s = udpSocket();
                try {
                  const r = await udpOnce(s, host, port);
                  tags.push(r.tag);
                  peers.push(r.from);
                } finally {
                  s.close();
                }
              }
            } catch {
              failures++;
            }
          }
          out({ tags, peers, seen, failures });
        } else if (cmd === "open") {
          held = await withTimeout(Deno.connect({ hostname: host, port }));
          const r = held.remoteAddr as Deno.NetAddr;
          out({ peer: `${r.hostname}:${r.port}` });
        } else if (cmd === "send") {
          await held!.write(enc.encode("x\n"));
          const line = await withTimeout(readLine(held!));
          out({ tag: line.split(" ")[0], ok: line !== "" });
        } else if (cmd === "usend") {
          udp ??= udpSocket();
          const r = await udpOnce(udp, host, port);
          out({ ...r, ok: true });
        } else if (cmd === "loop") {
          const end = Date.now() + Number(a);
          let ok = 0;
          let failed = 0;
          while (Date.now() < end) {
            try {
              await tcpOnce(host, port);
              ok++;
            } catch {
              failed++;
            }
          }
          out({ ok, failed });
        } else if (cmd === "bench") {
          const samples: number[] = [];
          let failed = 0;
          const start = performance.now();
          const end = start + Number(a);
          while (performance.now() < end) {
            const t0 = performance.now();
            try {
              const conn = await withTimeout(Deno.connect({ hostname: host, port }));
              samples.push(performance.now() - t0);
              try {
                await conn.write(enc.encode("x\n"));
                await withTimeout(readLine(conn));
              } finally {
                conn.close();
              }
            } catch {
              failed++;
            }
          }
          const secs = (performance.now() - start) / 1000;
          samples.sort((x, y) => x - y);
          const pct = (p: number) =>
            samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
          out({
            ok: samples.length,
            failed,
            rate: samples.length / secs,
            p50Us: pct(0.5) * 1000,
            p99Us: pct(0.99) * 1000,
            samplesUs: samples.map((x) => Math.round(x * 1000)),
          });
        } else if (cmd === "keepalive") {
          const conn = await withTimeout(Deno.connect({ hostname: host, port }));
          const start = performance.now();
          let ok = 0;
          try {
            while (performance.now() - start < Number(a)) {
              await conn.write(enc.encode("x\n"));
              await withTimeout(readLine(conn));
              ok++;
            }
          } finally {
            conn.close();
          }
          out({ ok, rate: ok / ((performance.now() - start) / 1000) });
        } else {
          out({ error: `unknown command ${cmd}` });
        }
      } catch (error) {
        out({ ok: false, error: String(error) });
      }
    }
  }
}

const [mode, x, y, z] = Deno.args;
if (mode === "server") await server(x, Number(y), z ?? "");
else if (mode === "client") await client(x, Number(y));
else {
  console.error("usage: lb_peer.ts server TCP|UDP <port> <tag> | client <host> <port>");
  Deno.exit(2);
}
