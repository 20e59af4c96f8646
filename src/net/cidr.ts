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

/** Address family of a peer address, unwrapping IPv4-mapped IPv6 (`::ffff:1.2.3.4`). */
export function normalizeAddress(address: string): { address: string; family: IpFamily } | null {
  const mapped = address.startsWith('::ffff:') ? address.slice(7) : '';
  if (mapped && isIP(mapped) === 4) return { address: mapped, family: 'ipv4' };
  const version = isIP(address);
  if (version === 0) return null;
  return { address, family: version === 4 ? 'ipv4' : 'ipv6' };
}
