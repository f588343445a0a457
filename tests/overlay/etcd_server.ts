/**
 * A real etcd-server (Debian's etcd 3.4) for tests: loopback only, random free ports, a temp
 * data dir, fast election flags; stop()/start() keep the data for "etcd was down" tests, and
 * dispose always kills it and removes the dir.
 * @module
 */

/** A running (or stopped) test etcd. */
export interface TestEtcd extends AsyncDisposable {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly dataDir: string;
  /** Stops etcd (SIGKILL, as a crash would); the data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data; resolves when healthy. */
  start(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function healthy(endpoint: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(500) });
      const body = await res.json();
      if (body.health === "true") return;
      last = JSON.stringify(body);
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`etcd at ${endpoint} not healthy after ${timeoutMs} ms: ${last}`);
}

/** Starts an etcd on loopback (ports chosen here) and waits until it is healthy. */
export async function startTestEtcd(): Promise<TestEtcd> {
  const dataDir = await Deno.makeTempDir({ prefix: "skiff-etcd-" });
  const clientPort = freePort();
  const peerPort = freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  let child: Deno.ChildProcess | undefined;
  const args = [
    "--name",
    "skifftest",
    "--data-dir",
    `${dataDir}/data`,
    "--listen-client-urls",
    endpoint,
    "--advertise-client-urls",
    endpoint,
    "--listen-peer-urls",
    `http://127.0.0.1:${peerPort}`,
    "--initial-advertise-peer-urls",
    `http://127.0.0.1:${peerPort}`,
    "--initial-cluster",
    `skifftest=http://127.0.0.1:${peerPort}`,
    "--election-timeout",
    "100",
    "--heartbeat-interval",
    "10",
    "--logger",
    "zap",
    "--log-outputs",
    `${dataDir}/etcd.log`,
  ];
  const stop = async () => {
    if (!child) return;
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    child = undefined;
  };
  const start = async () => {
    if (child) return;
    child = new Deno.Command("etcd", { args, stdout: "null", stderr: "null", stdin: "null" })
      .spawn();
    try {
      await healthy(endpoint, 10_000);
    } catch (error) {
      const log = await Deno.readTextFile(`${dataDir}/etcd.log`).catch(() => "");
      await stop();
      throw new Error(`${(error as Error).message}\n${log.slice(-1500)}`);
    }
  };
  try {
    await start();
  } catch (error) {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    endpoint,
    clientPort,
    dataDir,
    stop,
    start,
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}
