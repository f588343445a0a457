/**
 * skiff node agent: `deno run -A agent/main.ts --config /etc/skiff/config.json [flags]`.
 * config → store → overlay → CNI conflist → data plane → masquerade rules → loops; ready once
 * all converged. SIGTERM/SIGINT: stop loops, keep the data plane (Pods keep working);
 * SIGHUP: reload the config file (log settings apply at once; others on restart).
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad config or flags.
 * @module
 */
import { parseArgs } from "node:util";
import { type AgentConfig, CONFIG_FLAGS, ConfigError, loadConfig } from "./config.ts";
import { Daemon } from "./daemon.ts";
import { Readiness, serveHealth } from "./health.ts";
import { createLogger, type Logger } from "./log.ts";
import { Registry } from "./metrics.ts";
import { formatCidr } from "./net/ipv4.ts";
import { nodeComponents, type NodeState, registerNodeMetrics } from "./node_agent.ts";

const HELP = `Usage: skiff-agent [--config PATH] [flags]

Runs the skiff node agent in the foreground (systemd runs it this way).

Flags (each overrides the config file):
  --config PATH          config file (default /etc/skiff/config.json)
${
  Object.entries(CONFIG_FLAGS).map(([flag, field]) => `  --${flag.padEnd(20)} sets ${field}`)
    .join("\n")
}
  -h, --help             this help`;

/** What /statusz (and so `skiff status`) shows. */
export function statusOf(
  config: AgentConfig,
  state: NodeState,
  readiness: Readiness,
  started: Date,
): Record<string, unknown> {
  const overlay = state.overlay;
  return {
    node: config.nodeName,
    pid: Deno.pid,
    startedAt: started.toISOString(),
    ready: readiness.ready,
    pending: readiness.pending,
    staleLoops: readiness.stale(),
    store: config.store.type === "etcd"
      ? { type: "etcd", endpoints: config.store.endpoints, prefix: config.store.prefix }
      : { type: "embedded", dir: config.store.dir },
    overlay: overlay
      ? {
        subnet: overlay.subnet,
        network: formatCidr(overlay.config.network),
        device: overlay.device,
        mtu: overlay.mtu,
        uplink: { name: overlay.uplink.name, ip: overlay.uplink.ip, reason: overlay.uplink.reason },
        vtepMac: overlay.lease.attrs.vtepMac,
        lastSync: overlay.lastSync,
      }
      : undefined,
    dataplane: state.choice ? { kind: state.choice.kind, reason: state.choice.reason } : undefined,
    iptables: state.iptables
      ? { mode: state.iptables.mode, reason: state.iptables.reason }
      : undefined,
    services: state.lastServiceSync,
    paths: {
      pinDir: config.pinDir,
      cgroup: config.cgroupPath,
      servicesFile: config.servicesFile,
      subnetFile: config.cni.subnetFile,
      stateDir: config.stateDir,
    },
  };
}

async function runAgent(args: string[]): Promise<number> {
  const flagOptions = Object.fromEntries(
    Object.keys(CONFIG_FLAGS).map((f) => [f, { type: "string" as const }]),
  );
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        ...flagOptions,
        config: { type: "string", default: "/etc/skiff/config.json" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    console.error(`skiff-agent: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(HELP);
    return 0;
  }
  const { config: configPath, help: _h, ...flags } = parsed.values;
  const explicit = args.some((a) => a === "--config" || a.startsWith("--config="));
  let config: AgentConfig;
  try {
    config = await loadConfig(configPath as string, flags as Record<string, string>, {
      required: explicit,
    });
  } catch (error) {
    console.error(`skiff-agent: ${(error as Error).message}`);
    return error instanceof ConfigError ? 2 : 1;
  }
  let log: Logger = createLogger(config.log, { node: config.nodeName });
  log.info("starting", { config: configPath, dataplane: config.dataplane, pid: Deno.pid });

  const started = new Date();
  const registry = new Registry();
  registry.counter("skiff_scrape_collector_errors_total", "Scrape-time collectors that failed");
  const readiness = new Readiness();
  const state: NodeState = {};
  registerNodeMetrics(registry, state, config);
  const daemon = new Daemon(nodeComponents(config, state, log), {
    log,
    registry,
    readiness,
    resyncSeconds: config.resyncSeconds,
  });
  let servers;
  try {
    servers = serveHealth({
      healthAddress: config.healthAddress,
      metricsAddress: config.metricsAddress,
      readiness,
      registry,
      status: () => statusOf(config, state, readiness, started),
    });
  } catch (error) {
    log.error("cannot listen for health/metrics", { error });
    return 1;
  }

  const stopped = Promise.withResolvers<string>();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve(signal));
  }
  Deno.addSignalListener("SIGHUP", async () => {
    try {
      const next = await loadConfig(configPath as string, flags as Record<string, string>);
      log = createLogger(next.log, { node: next.nodeName });
      log.info("config reloaded (log settings applied; other changes need a restart)");
      daemon.trigger();
    } catch (error) {
      log.error("config reload refused; keeping the running config", { error });
    }
  });

  await daemon.start();
  if (readiness.ready) log.info("ready", { ms: Date.now() - started.getTime() });
  else log.warn("not ready yet; retrying", { pending: readiness.pending });
  const signal = await stopped.promise;
  log.info("stopping; the data plane stays in place", { signal });
  await daemon.stop();
  await servers.close();
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await runAgent(Deno.args));
