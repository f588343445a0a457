/**
 * tc LB on crafted packets (BPF_PROG_TEST_RUN): DNAT/SNAT and reverse NAT rewrites with
 * valid checksums, conntrack state (SYN, reply, FIN/RST, a new SYN re-selects), drops.
 */
import assert from "node:assert/strict";
import { BpfMap, PerCpuMap } from "../../agent/bpf/bpf_map.ts";
import {
  affinityKey,
  AffinityKind,
  affinityValue,
  BackendFlag,
  backendValue,
  configValue,
  Ct,
  ctKey,
  ctValue,
  idKey,
  ipClientId,
  IPPROTO,
  MAGLEV_M,
  maglevValue,
  revNatValue,
  statsValue,
  SvcFlag,
  svcKey,
  svcValue,
} from "../../agent/lb/lb_abi.ts";
import {
  ACK,
  buildPacket,
  checksumsValid,
  FIN,
  type PacketSpec,
  parsePacket,
  RST,
  SYN,
  TCP,
  UDP,
} from "./packet.ts";
import { loadForTest, progRun } from "./prog_run.ts";

const NODE = "192.168.100.11";
const CLIENT = "192.168.100.250";
const LOCAL_BE = "10.244.1.5";
const REMOTE_BE = "10.244.2.7";
const TC_OK = 0;
const TC_SHOT = 2;

async function setup() {
  const obj = await loadForTest("tc_lb");
  const m = obj.maps;
  const services = BpfMap.open(`${m}/lb_services`, svcKey, svcValue);
  const backends = BpfMap.open(`${m}/lb_backends`, idKey, backendValue);
  const revNat = BpfMap.open(`${m}/lb_rev_nat`, idKey, revNatValue);
  const maglev = BpfMap.open(`${m}/lb_maglev`, idKey, maglevValue);
  const ct = BpfMap.open(`${m}/lb_ct`, ctKey, ctValue);
  const config = BpfMap.open(`${m}/lb_config`, idKey, configValue);
  const stats = PerCpuMap.open(`${m}/lb_stats`, idKey, statsValue);
  const affinity = BpfMap.open(`${m}/lb_affinity`, affinityKey, affinityValue);
  config.set(0, { snat_addr: NODE, flags: 0 });
  backends.set(1, { addr: LOCAL_BE, port: 8080, proto: IPPROTO.TCP, flags: BackendFlag.LOCAL });
  backends.set(2, { addr: REMOTE_BE, port: 8080, proto: IPPROTO.TCP, flags: 0 });
  backends.set(3, { addr: LOCAL_BE, port: 5353, proto: IPPROTO.UDP, flags: BackendFlag.LOCAL });
  /** A frontend whose Maglev table is all `backendId`. */
  const frontend = (
    vip: string,
    port: number,
    proto: number,
    revNatId: number,
    backendId: number,
    flags: number,
    affinityTimeout = 0,
  ) => {
    maglev.set(revNatId, { backend_id: new Uint32Array(MAGLEV_M).fill(backendId) });
    revNat.set(revNatId, { vip, port, proto });
    services.set({ vip, dport: port, proto, slot: 0 }, {
      backend_id: 0,
      rev_nat_id: revNatId,
      affinity_timeout: affinityTimeout,
      count: backendId ? 1 : 0,
      flags,
    });
  };
  const close = async () => {
    for (const x of [services, backends, revNat, maglev, ct, config, stats, affinity]) x.close();
    await obj[Symbol.asyncDispose]();
  };
  return { obj, services, backends, maglev, ct, stats, affinity, frontend, close };
}

async function send(prog: string, spec: PacketSpec) {
  const result = await progRun(prog, buildPacket(spec));
  const sums = checksumsValid(result.packet);
  assert.ok(sums.ip, "IP checksum must verify after the rewrite");
  assert.ok(sums.l4, "L4 checksum must verify after the rewrite");
  return { retval: result.retval, pkt: parsePacket(result.packet) };
}

Deno.test("tc LB DNATs a NodePort SYN to a local backend and reverse-NATs the reply", async () => {
  const t = await setup();
  try {
    t.frontend(NODE, 30080, TCP, 1, 1, SvcFlag.NODEPORT);
    const ingress = t.obj.prog("tc_lb_ingress");
    const egress = t.obj.prog("tc_lb_egress");
    const syn = await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: NODE,
      sport: 40000,
      dport: 30080,
      flags: SYN,
    });
    assert.equal(syn.retval, TC_OK);
    assert.deepEqual([syn.pkt.src, syn.pkt.sport, syn.pkt.dst, syn.pkt.dport], [
      CLIENT,
      40000,
      LOCAL_BE,
      8080,
    ]);
    const fwd = t.ct.get({
      saddr: CLIENT,
      daddr: NODE,
      sport: 40000,
      dport: 30080,
      proto: TCP,
      dir: Ct.FWD,
    });
    assert.equal(fwd?.state, Ct.SYN_SENT);
    assert.equal(fwd?.backend_id, 1);

    const synAck = await send(egress, {
      proto: TCP,
      src: LOCAL_BE,
      dst: CLIENT,
      sport: 8080,
      dport: 40000,
      flags: SYN | ACK,
    });
    assert.equal(synAck.retval, TC_OK);
    assert.deepEqual([synAck.pkt.src, synAck.pkt.sport, synAck.pkt.dst, synAck.pkt.dport], [
      NODE,
      30080,
      CLIENT,
      40000,
    ]);
    const after = t.ct.get({
      saddr: CLIENT,
      daddr: NODE,
      sport: 40000,
      dport: 30080,
      proto: TCP,
      dir: Ct.FWD,
    });
    assert.equal(after?.state, Ct.OPEN, "the reply moves the flow to established");

    // data keeps going to the same backend even when the Maglev table changes
    t.maglev.set(1, { backend_id: new Uint32Array(MAGLEV_M).fill(2) });
    const data = await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: NODE,
      sport: 40000,
      dport: 30080,
      flags: ACK,
    });
    assert.equal(data.pkt.dst, LOCAL_BE);
    assert.equal(t.stats.getSum(1)?.new_flows, 1);
    assert.equal(t.stats.getSum(1)?.packets, 3);
  } finally {
    await t.close();
  }
});

Deno.test("tc LB SNATs to the node address for a remote backend and translates the reply back", async () => {
  const t = await setup();
  try {
    t.frontend("192.168.100.200", 80, TCP, 2, 2, SvcFlag.EXTERNAL);
    const ingress = t.obj.prog("tc_lb_ingress");
    const syn = await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: "192.168.100.200",
      sport: 41000,
      dport: 80,
      flags: SYN,
    });
    assert.equal(syn.pkt.dst, REMOTE_BE);
    assert.equal(syn.pkt.dport, 8080);
    assert.equal(syn.pkt.src, NODE, "source becomes the node address");
    const reply = await send(ingress, {
      proto: TCP,
      src: REMOTE_BE,
      dst: NODE,
      sport: 8080,
      dport: syn.pkt.sport,
      flags: SYN | ACK,
    });
    assert.deepEqual([reply.pkt.src, reply.pkt.sport, reply.pkt.dst, reply.pkt.dport], [
      "192.168.100.200",
      80,
      CLIENT,
      41000,
    ]);
  } finally {
    await t.close();
  }
});

Deno.test("tc LB keeps a zero UDP checksum zero and fixes a real one", async () => {
  const t = await setup();
  try {
    t.frontend(NODE, 30053, UDP, 3, 3, SvcFlag.NODEPORT);
    const ingress = t.obj.prog("tc_lb_ingress");
    const spec = { proto: UDP, src: CLIENT, dst: NODE, sport: 5000, dport: 30053 };
    const withSum = await send(ingress, spec);
    assert.equal(withSum.pkt.dst, LOCAL_BE);
    assert.equal(withSum.pkt.dport, 5353);
    assert.notEqual(withSum.pkt.l4Checksum, 0);
    const none = await send(ingress, { ...spec, sport: 5001, noUdpChecksum: true });
    assert.equal(none.pkt.dst, LOCAL_BE);
    assert.equal(none.pkt.l4Checksum, 0);
  } finally {
    await t.close();
  }
});

Deno.test("tc LB leaves ClusterIPs and unknown destinations alone and drops with no backend", async () => {
  const t = await setup();
  try {
    t.frontend("10.96.0.10", 80, TCP, 4, 1, SvcFlag.CLUSTERIP);
    t.frontend(NODE, 30081, TCP, 5, 0, SvcFlag.NODEPORT);
    const ingress = t.obj.prog("tc_lb_ingress");
    const base = { proto: TCP, src: CLIENT, sport: 42000, flags: SYN };
    const cip = await send(ingress, { ...base, dst: "10.96.0.10", dport: 80 });
    assert.equal(cip.retval, TC_OK);
    assert.equal(cip.pkt.dst, "10.96.0.10");
    const other = await send(ingress, { ...base, dst: NODE, dport: 22 });
    assert.equal(other.pkt.dst, NODE);
    const empty = await progRun(ingress, buildPacket({ ...base, dst: NODE, dport: 30081 }));
    assert.equal(empty.retval, TC_SHOT);
    assert.equal(t.stats.getSum(5)?.no_backend, 1);
  } finally {
    await t.close();
  }
});

Deno.test("tc LB closes on RST/FIN and a new SYN on the same ports chooses again", async () => {
  const t = await setup();
  try {
    t.frontend(NODE, 30080, TCP, 1, 1, SvcFlag.NODEPORT);
    const ingress = t.obj.prog("tc_lb_ingress");
    const egress = t.obj.prog("tc_lb_egress");
    const c = { proto: TCP, src: CLIENT, dst: NODE, sport: 43000, dport: 30080 };
    const key = { saddr: CLIENT, daddr: NODE, sport: 43000, dport: 30080, proto: TCP, dir: Ct.FWD };
    await send(ingress, { ...c, flags: SYN });
    await send(egress, {
      proto: TCP,
      src: LOCAL_BE,
      dst: CLIENT,
      sport: 8080,
      dport: 43000,
      flags: SYN | ACK,
    });
    await send(ingress, { ...c, flags: FIN | ACK });
    assert.equal(t.ct.get(key)?.state, Ct.CLOSING);
    await send(egress, {
      proto: TCP,
      src: LOCAL_BE,
      dst: CLIENT,
      sport: 8080,
      dport: 43000,
      flags: FIN | ACK,
    });
    assert.equal(t.ct.get(key)?.state, Ct.CLOSED);
    // retransmitted SYN while still SYN_SENT keeps the backend; a SYN after close re-selects
    t.backends.set(2, { addr: "10.244.1.9", port: 9090, proto: TCP, flags: BackendFlag.LOCAL });
    t.maglev.set(1, { backend_id: new Uint32Array(MAGLEV_M).fill(2) });
    const again = await send(ingress, { ...c, flags: SYN });
    assert.equal(again.pkt.dst, "10.244.1.9");
    assert.equal(t.ct.get(key)?.backend_id, 2);
    const retrans = await send(ingress, { ...c, flags: SYN });
    assert.equal(retrans.pkt.dst, "10.244.1.9");
    await send(ingress, { ...c, flags: RST });
    assert.equal(t.ct.get(key)?.state, Ct.CLOSED);
    // the old flow's reverse entry is gone: only the new backend's exists
    assert.equal(
      t.ct.get({ saddr: LOCAL_BE, daddr: CLIENT, sport: 8080, dport: 43000, proto: TCP, dir: 1 }),
      undefined,
    );
  } finally {
    await t.close();
  }
});

Deno.test("tc LB drops a stale reverse entry when the client reuses its port directly", async () => {
  const t = await setup();
  try {
    t.frontend(NODE, 30080, TCP, 1, 1, SvcFlag.NODEPORT);
    const ingress = t.obj.prog("tc_lb_ingress");
    const egress = t.obj.prog("tc_lb_egress");
    await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: NODE,
      sport: 44000,
      dport: 30080,
      flags: SYN,
    });
    // the same client port now talks to the backend directly
    await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: LOCAL_BE,
      sport: 44000,
      dport: 8080,
      flags: SYN,
    });
    const reply = await send(egress, {
      proto: TCP,
      src: LOCAL_BE,
      dst: CLIENT,
      sport: 8080,
      dport: 44000,
      flags: SYN | ACK,
    });
    assert.equal(reply.pkt.src, LOCAL_BE, "a direct connection's reply is not rewritten");
    assert.equal(reply.pkt.sport, 8080);
  } finally {
    await t.close();
  }
});

Deno.test("tc LB keeps a client on its affinity backend until the entry expires", async () => {
  const t = await setup();
  try {
    t.frontend(NODE, 30080, TCP, 1, 1, SvcFlag.NODEPORT | SvcFlag.AFFINITY, 30);
    const ingress = t.obj.prog("tc_lb_ingress");
    const first = await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: NODE,
      sport: 45000,
      dport: 30080,
      flags: SYN,
    });
    assert.equal(first.pkt.dst, LOCAL_BE);
    // the table now says another backend, but the client sticks to the first one
    t.backends.set(2, { addr: "10.244.1.9", port: 9090, proto: TCP, flags: BackendFlag.LOCAL });
    t.maglev.set(1, { backend_id: new Uint32Array(MAGLEV_M).fill(2) });
    const sticky = await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: NODE,
      sport: 45001,
      dport: 30080,
      flags: SYN,
    });
    assert.equal(sticky.pkt.dst, LOCAL_BE);
    const key = {
      client_id: ipClientId(CLIENT),
      rev_nat_id: 1,
      kind: AffinityKind.IP,
    };
    const entry = t.affinity.get(key);
    assert.equal(entry?.backend_id, 1);
    // age the entry past its 30 s timeout: the next flow follows the table again
    t.affinity.set(key, { last_used: 1n, backend_id: 1 });
    const expired = await send(ingress, {
      proto: TCP,
      src: CLIENT,
      dst: NODE,
      sport: 45002,
      dport: 30080,
      flags: SYN,
    });
    assert.equal(expired.pkt.dst, "10.244.1.9");
    assert.equal(t.affinity.get(key)?.backend_id, 2);
  } finally {
    await t.close();
  }
});

Deno.test("tc LB treats an idle-expired flow as new", async () => {
  const t = await setup();
  try {
    t.frontend(NODE, 30053, UDP, 3, 3, SvcFlag.NODEPORT);
    const ingress = t.obj.prog("tc_lb_ingress");
    const spec = { proto: UDP, src: CLIENT, dst: NODE, sport: 5000, dport: 30053 };
    await send(ingress, spec);
    const key = { saddr: CLIENT, daddr: NODE, sport: 5000, dport: 30053, proto: UDP, dir: Ct.FWD };
    const live = t.ct.get(key)!;
    // a UDP flow idle for longer than the UDP timeout is gone: the next datagram chooses again
    t.backends.set(4, { addr: "10.244.1.8", port: 5353, proto: UDP, flags: BackendFlag.LOCAL });
    t.maglev.set(3, { backend_id: new Uint32Array(MAGLEV_M).fill(4) });
    const fresh = await send(ingress, spec);
    assert.equal(fresh.pkt.dst, LOCAL_BE, "a live flow keeps its backend");
    t.ct.set(key, { ...live, last_seen: 1n });
    const after = await send(ingress, spec);
    assert.equal(after.pkt.dst, "10.244.1.8");
    assert.equal(t.ct.get(key)?.backend_id, 4);
  } finally {
    await t.close();
  }
});
