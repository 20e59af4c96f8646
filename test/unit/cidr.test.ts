// Source addresses against CIDR lists: IPv4 written inside IPv6 is judged as the IPv4 it carries.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { blockListOf, normalizeAddress } from '../../src/net/cidr.js';

const denied = blockListOf(['203.0.113.0/24']);

const embedded: [string, string][] = [
  ['IPv4-mapped, dotted (::ffff:a.b.c.d)', '::ffff:203.0.113.7'],
  ['IPv4-mapped, hex (::ffff:cb00:7107)', '::ffff:cb00:7107'],
  ['IPv4-compatible, dotted (::a.b.c.d)', '::203.0.113.7'],
  ['IPv4-compatible, hex (::cb00:7107)', '::cb00:7107'],
  ['NAT64 well-known prefix, dotted (64:ff9b::a.b.c.d)', '64:ff9b::203.0.113.7'],
  ['NAT64 well-known prefix, hex, upper case', '64:FF9B::CB00:7107'],
  ['NAT64 written out in full', '0064:ff9b:0000:0000:0000:0000:cb00:7107'],
];
for (const [name, address] of embedded) {
  test(`finding 13: ${name} is matched as IPv4 against a deny list`, () => {
    const source = normalizeAddress(address);
    assert.deepEqual(source, { address: '203.0.113.7', family: 'ipv4' });
    assert.equal(denied?.check(source.address, source.family), true);
  });
}

const notEmbedded: [string, string, string][] = [
  ['loopback ::1 stays IPv6', '::1', 'ipv6'],
  ['the unspecified address stays IPv6', '::', 'ipv6'],
  ['a global IPv6 address stays IPv6', '2001:db8::cb00:7107', 'ipv6'],
  ['NAT64 local-use prefix (64:ff9b:1::/48) is not the /96 well-known one', '64:ff9b:1::cb00:7107', 'ipv6'],
  ['plain IPv4', '203.0.113.7', 'ipv4'],
];
for (const [name, address, family] of notEmbedded) {
  test(`normalizeAddress: ${name}`, () => {
    assert.equal(normalizeAddress(address)?.family, family);
  });
}

test('normalizeAddress: not an address → null', () => {
  assert.equal(normalizeAddress('203.0.113.300'), null);
  assert.equal(normalizeAddress(''), null);
  assert.equal(normalizeAddress('::ffff:999.0.0.1'), null);
});
