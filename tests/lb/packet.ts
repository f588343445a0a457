/**
 * Crafted Ethernet/IPv4/TCP|UDP packets for BPF_PROG_TEST_RUN tests: build one with valid
 * checksums, parse one back, and verify its IP and L4 checksums from scratch.
 * @module
 */
import { formatIpv4, parseIpv4 } from "../../agent/net/ipv4.ts";

export const TCP = 6;
export const UDP = 17;
export const SYN = 0x02;
export const ACK = 0x10;
export const FIN = 0x01;
export const RST = 0x04;

/** What a test packet carries. */
export interface PacketSpec {
  readonly proto: number;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  /** TCP flags (default ACK). */
  readonly flags?: number;
  readonly payload?: Uint8Array;
  /** UDP only: send with checksum 0 ("none"). */
  readonly noUdpChecksum?: boolean;
}

/** A parsed packet. */
export interface ParsedPacket {
  readonly proto: number;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly flags: number;
  readonly l4Checksum: number;
}

function sum16(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2) sum += bytes[bytes.length - 1] << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

function pseudoSum(ip: Uint8Array, proto: number, l4len: number): number {
  return sum16(ip.subarray(12, 20)) + proto + l4len;
}

/** Builds Ethernet + IPv4 + TCP/UDP with correct checksums. */
export function buildPacket(spec: PacketSpec): Uint8Array {
  const payload = spec.payload ?? new Uint8Array([1, 2, 3, 4, 5]);
  const l4len = (spec.proto === TCP ? 20 : 8) + payload.length;
  const pkt = new Uint8Array(14 + 20 + l4len);
  const v = new DataView(pkt.buffer);
  pkt.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], 0);
  v.setUint16(12, 0x0800);
  const ip = pkt.subarray(14, 34);
  const iv = new DataView(pkt.buffer, 14, 20);
  iv.setUint8(0, 0x45);
  iv.setUint16(2, 20 + l4len);
  iv.setUint16(4, 0x1234);
  iv.setUint16(6, 0x4000); // DF
  iv.setUint8(8, 64);
  iv.setUint8(9, spec.proto);
  iv.setUint32(12, parseIpv4(spec.src));
  iv.setUint32(16, parseIpv4(spec.dst));
  iv.setUint16(10, ~fold(sum16(ip)) & 0xffff);
  const l4 = pkt.subarray(34);
  const lv = new DataView(pkt.buffer, 34, l4len);
  lv.setUint16(0, spec.sport);
  lv.setUint16(2, spec.dport);
  if (spec.proto === TCP) {
    lv.setUint32(4, 1000);
    lv.setUint32(8, 0);
    lv.setUint8(12, 5 << 4);
    lv.setUint8(13, spec.flags ?? ACK);
    lv.setUint16(14, 65535);
    l4.set(payload, 20);
  } else {
    lv.setUint16(4, l4len);
    l4.set(payload, 8);
  }
  if (spec.proto === UDP && spec.noUdpChecksum) return pkt;
  const csum = ~fold(sum16(l4, pseudoSum(ip, spec.proto, l4len))) & 0xffff;
  lv.setUint16(spec.proto === TCP ? 16 : 6, spec.proto === UDP && csum === 0 ? 0xffff : csum);
  return pkt;
}

/** Reads the addresses, ports and flags of a packet built like {@linkcode buildPacket}. */
export function parsePacket(pkt: Uint8Array): ParsedPacket {
  const v = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
  const proto = v.getUint8(14 + 9);
  return {
    proto,
    src: formatIpv4(v.getUint32(14 + 12)),
    dst: formatIpv4(v.getUint32(14 + 16)),
    sport: v.getUint16(34),
    dport: v.getUint16(36),
    flags: proto === TCP ? v.getUint8(34 + 13) : 0,
    l4Checksum: v.getUint16(proto === TCP ? 34 + 16 : 34 + 6),
  };
}

/** True when the IPv4 header checksum and the TCP/UDP checksum (unless UDP's 0) verify. */
export function checksumsValid(pkt: Uint8Array): { ip: boolean; l4: boolean } {
  const ip = pkt.subarray(14, 34);
  const v = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
  const proto = v.getUint8(14 + 9);
  const total = v.getUint16(14 + 2);
  const l4 = pkt.subarray(34, 14 + total);
  const ipOk = fold(sum16(ip)) === 0xffff;
  if (proto === UDP && v.getUint16(34 + 6) === 0) return { ip: ipOk, l4: true };
  const l4Ok = fold(sum16(l4, pseudoSum(ip, proto, l4.length))) === 0xffff;
  return { ip: ipOk, l4: l4Ok };
}
