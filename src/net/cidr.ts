// CIDR lists on node:net's BlockList (IPv4 and IPv6, checked in C++), parsed once at load time.
import { BlockList, isIP } from 'node:net';

export type IpFamily = 'ipv4' | 'ipv6';

/** Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128). Returns an error text or the parts. */
export function parseCidr(text: string): { address: string; prefix: number; family: IpFamily } | string {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return `"${text}" is not an IP address or CIDR range`;
  const family: IpFamily = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  if (slash === -1) return { address, prefix: max, family };
  const prefixText = text.slice(slash + 1);
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > max) {
    return `"${text}" has an invalid prefix length (0-${max} for IPv${version})`;
  }
  return { address, prefix, family };
}

/** Builds a BlockList from already validated CIDRs; null for an empty list. */
export function blockListOf(cidrs: readonly string[]): BlockList | null {
  if (cidrs.length === 0) return null;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const parsed = parseCidr(cidr);
    if (typeof parsed === 'string') throw new Error(parsed);
    list.addSubnet(parsed.address, parsed.prefix, parsed.family);
  }
  return list;
}

/**
 * Address family of a peer address, IPv4 carried inside IPv6 unwrapped so that IPv4 lists judge it:
 * IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291), IPv4-compatible (`::a.b.c.d`, deprecated but routable by
 * some stacks) and the NAT64 well-known prefix (`64:ff9b::a.b.c.d`, RFC 6052), dotted or in hex.
 * `::` and `::1` stay IPv6.
 */
export function normalizeAddress(address: string): { address: string; family: IpFamily } | null {
  const version = isIP(address);
  if (version === 0) return null;
  if (version === 4) return { address, family: 'ipv4' };
  const embedded = embeddedIpv4(address);
  return embedded === null ? { address, family: 'ipv6' } : { address: embedded, family: 'ipv4' };
}

/** The IPv4 address a valid IPv6 address carries in its last 32 bits, or null. */
function embeddedIpv4(address: string): string | null {
  const groups = ipv6Groups(address);
  if (groups === null) return null;
  const high = groups.slice(0, 5).every((g) => g === 0);
  const mapped = high && groups[5] === 0xffff;
  const compatible = high && groups[5] === 0 && (groups[6] ?? 0) >= 0x0100;
  const nat64 = groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0);
  if (!(mapped || compatible || nat64)) return null;
  const g6 = groups[6] ?? 0;
  const g7 = groups[7] ?? 0;
  return `${g6 >> 8}.${g6 & 0xff}.${g7 >> 8}.${g7 & 0xff}`;
}

/** The eight 16-bit groups of an address node:net accepted as IPv6 (zone id dropped). */
function ipv6Groups(address: string): number[] | null {
  let text = address.toLowerCase();
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const octets = tail.split('.').map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const head = parse(halves[0] ?? '');
  const rest = halves.length === 2 ? parse(halves[1] ?? '') : [];
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...Array<number>(Math.max(0, fill)).fill(0), ...rest];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)
    ? groups
    : null;
}
