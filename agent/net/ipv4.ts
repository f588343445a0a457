/**
 * IPv4 addresses and CIDR prefixes as plain values: parsing with clear errors, formatting,
 * containment and overlap. Addresses are unsigned 32-bit numbers in host order.
 * @module
 */

/** An IPv4 prefix such as 10.244.1.0/24; `base` is the network address. */
export interface Cidr {
  readonly base: number;
  readonly prefix: number;
}

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted-quad address; returns undefined when it is not one. */
export function tryParseIpv4(text: string): number | undefined {
  const m = DOTTED.exec(text);
  if (!m) return undefined;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255 || (m[i].length > 1 && m[i][0] === "0")) return undefined;
    value = value * 256 + octet;
  }
  return value >>> 0;
}

/** Parses a dotted-quad address or throws a TypeError naming the bad text. */
export function parseIpv4(text: string): number {
  const value = tryParseIpv4(text);
  if (value === undefined) throw new TypeError(`"${text}" is not an IPv4 address`);
  return value;
}

/** Formats a host-order address as dotted quad. */
export function formatIpv4(value: number): string {
  const v = value >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** The netmask of a prefix length, host order. */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * Parses "a.b.c.d/n". With `strict` (the default) host bits must be zero, so "10.244.1.5/24"
 * is refused rather than silently truncated.
 */
export function parseCidr(text: string, options: { strict?: boolean } = {}): Cidr {
  const slash = text.indexOf("/");
  if (slash < 0) throw new TypeError(`"${text}" is not a CIDR (missing "/prefix")`);
  const addr = parseIpv4(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  const prefix = Number(prefixText);
  if (!/^\d{1,2}$/.test(prefixText) || prefix > 32) {
    throw new TypeError(`"${text}" has an invalid prefix length "${prefixText}"`);
  }
  const base = (addr & prefixMask(prefix)) >>> 0;
  if ((options.strict ?? true) && base !== addr) {
    throw new TypeError(`"${text}" has host bits set (network is ${formatIpv4(base)}/${prefix})`);
  }
  return { base, prefix };
}

/** Formats a prefix as "a.b.c.d/n". */
export function formatCidr(cidr: Cidr): string {
  return `${formatIpv4(cidr.base)}/${cidr.prefix}`;
}

/** Number of addresses in a prefix. */
export function cidrSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefix);
}

/** True when `addr` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, addr: number): boolean {
  return ((addr & prefixMask(cidr.prefix)) >>> 0) === cidr.base;
}

/** True when two prefixes share at least one address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const shorter = a.prefix <= b.prefix ? a : b;
  const longer = shorter === a ? b : a;
  return cidrContains(shorter, longer.base);
}

/** The n-th address of a prefix (0 is the network address). */
export function cidrHost(cidr: Cidr, n: number): number {
  if (n < 0 || n >= cidrSize(cidr)) {
    throw new RangeError(`host ${n} is outside ${formatCidr(cidr)}`);
  }
  return (cidr.base + n) >>> 0;
}
