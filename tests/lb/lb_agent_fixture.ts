/**
 * A stand-in agent process for the restart test: installs the eBPF data plane, syncs the
 * snapshot in a JSON file, prints the sync report as one JSON line, then idles until killed.
 * Usage: lb_agent_fixture.ts '<BpfDataplaneOptions JSON>' <snapshot.json>
 */
import { BpfDataplane } from "../../agent/lb/bpf_dataplane.ts";

const options = JSON.parse(Deno.args[0]);
const snapshot = JSON.parse(await Deno.readTextFile(Deno.args[1]));
const dataplane = await BpfDataplane.install(options);
const report = await dataplane.sync(snapshot);
console.log(JSON.stringify(report));
setInterval(() => {}, 1 << 30);
