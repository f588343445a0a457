/**
 * The LB's pinned maps opened together with their codecs (one fd each); `using` closes them.
 * @module
 */
import { BpfMap, PerCpuMap } from "../bpf/bpf_map.ts";
import {
  type AffinityKey,
  affinityKey,
  type AffinityValue,
  affinityValue,
  type BackendValue,
  backendValue,
  type ConfigValue,
  configValue,
  type CtKey,
  ctKey,
  type CtValue,
  ctValue,
  idKey,
  MAGLEV_M,
  maglevCodec,
  type MaglevValue,
  type RevNatValue,
  revNatValue,
  type SockRevKey,
  sockRevKey,
  type SockRevValue,
  sockRevValue,
  type StatsValue,
  statsValue,
  type SvcKey,
  svcKey,
  type SvcValue,
  svcValue,
} from "./lb_abi.ts";

/** The LB maps of one pin dir. */
export class LbMaps implements Disposable {
  private constructor(
    readonly services: BpfMap<SvcKey, SvcValue>,
    readonly backends: BpfMap<number, BackendValue>,
    readonly revNat: BpfMap<number, RevNatValue>,
    readonly maglev: BpfMap<number, MaglevValue>,
    readonly ct: BpfMap<CtKey, CtValue>,
    readonly affinity: BpfMap<AffinityKey, AffinityValue>,
    readonly sockRev: BpfMap<SockRevKey, SockRevValue>,
    readonly stats: PerCpuMap<number, StatsValue>,
    readonly config: BpfMap<number, ConfigValue>,
    /** Buckets per Maglev table (the build's SKIFF_MAGLEV_M). */
    readonly maglevSize: number,
  ) {}

  /**
   * Opens every LB map pinned in `dir`; nothing stays open when one fails. `maglevSize` is the
   * SKIFF_MAGLEV_M the objects were built with (default MAGLEV_M).
   */
  static open(dir: string, options: { maglevSize?: number } = {}): LbMaps {
    const maglevSize = options.maglevSize ?? MAGLEV_M;
    const opened: { close(): void }[] = [];
    const keep = <T extends { close(): void }>(m: T): T => (opened.push(m), m);
    try {
      return new LbMaps(
        keep(BpfMap.open(`${dir}/lb_services`, svcKey, svcValue)),
        keep(BpfMap.open(`${dir}/lb_backends`, idKey, backendValue)),
        keep(BpfMap.open(`${dir}/lb_rev_nat`, idKey, revNatValue)),
        keep(BpfMap.open(`${dir}/lb_maglev`, idKey, maglevCodec(maglevSize))),
        keep(BpfMap.open(`${dir}/lb_ct`, ctKey, ctValue)),
        keep(BpfMap.open(`${dir}/lb_affinity`, affinityKey, affinityValue)),
        keep(BpfMap.open(`${dir}/lb_sock_rev`, sockRevKey, sockRevValue)),
        keep(PerCpuMap.open(`${dir}/lb_stats`, idKey, statsValue)),
        keep(BpfMap.open(`${dir}/lb_config`, idKey, configValue)),
        maglevSize,
      );
    } catch (error) {
      for (const m of opened) m.close();
      throw error;
    }
  }

  close(): void {
    for (
      const m of [
        this.services,
        this.backends,
        this.revNat,
        this.maglev,
        this.ct,
        this.affinity,
        this.sockRev,
        this.stats,
        this.config,
      ]
    ) m.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
