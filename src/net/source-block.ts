// The address block a client address is counted under by a per-source limit: the address masked to
// a prefix, written `<network>/<prefix>` (`203.0.113.7/32`, `2001:db8:1:2::/64`). IPv4-mapped IPv6
// addresses count as IPv4. An address Envoy did not send (unix socket) is one block, `unknown`.
import { SocketAddress } from 'node:net';
import { normalizeAddress } from './cidr.js';

export function sourceBlock(
  address: string,
  prefix: { readonly ipv4: number; readonly ipv6: number },
): string {
  const normal = normalizeAddress(address);
  if (!normal) return 'unknown';
  if (normal.family === 'ipv4') {
    const bits = prefix.ipv4;
    const n = normal.address.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
    const masked = bits === 0 ? 0 : Math.floor(n / 2 ** (32 - bits)) * 2 ** (32 - bits);
    const octets = [24, 16, 8, 0].map((shift) => Math.floor(masked / 2 ** shift) % 256);
    return `${octets.join('.')}/${bits}`;
  }
  const words = expandIpv6(normal.address);
  let remaining = prefix.ipv6;
  const masked = words.map((word) => {
    const keep = Math.max(0, Math.min(16, remaining));
    remaining -= 16;
    return keep === 0 ? 0 : word & (0xffff << (16 - keep)) & 0xffff;
  });
  // SocketAddress writes the canonical (compressed, lower-case) form.
  const text = masked.map((w) => w.toString(16)).join(':');
  const canonical = new SocketAddress({ address: text, family: 'ipv6' }).address;
  return `${canonical}/${prefix.ipv6}`;
}

/** The eight 16-bit words of an IPv6 address (already validated by isIP). */
function expandIpv6(address: string): number[] {
  const zone = address.indexOf('%');
  let text = zone === -1 ? address : address.slice(0, zone);
  // A trailing dotted quad (::ffff:1.2.3.4 not mapped, or 64:ff9b::1.2.3.4) becomes two words.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(fill).fill('0'), ...right].map((w) => Number.parseInt(w, 16));
}
