// Revocations, the pure parts: static lists, combination, message format and keys.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  combineRevocations,
  encodeRevocationMessage,
  parseRevocationMessage,
  REVOCATION_KINDS,
  type RevocationMessage,
  type Revocations,
  revocationKeys,
  StaticRevocations,
} from '../../src/identity/revocation.js';

describe('StaticRevocations', () => {
  const lists = new StaticRevocations({ jti: ['j-1'], application: ['app-1'], api_key: ['key-1', 'key-2'] });
  const cases: [string, Parameters<Revocations['isRevoked']>, boolean][] = [
    ['a listed jti', ['jti', 'j-1'], true],
    ['a listed application', ['application', 'app-1'], true],
    ['a listed api key', ['api_key', 'key-2'], true],
    ['an unlisted id', ['jti', 'j-2'], false],
    ['an id listed under another kind', ['application', 'j-1'], false],
    ['the empty string', ['api_key', ''], false],
  ];
  for (const [name, [kind, id], expected] of cases) {
    test(`${name}: ${kind} ${JSON.stringify(id)} → ${expected}`, () => {
      assert.equal(lists.isRevoked(kind, id), expected);
    });
  }

  test('no lists: nothing revoked', () => {
    const none = new StaticRevocations();
    for (const kind of REVOCATION_KINDS) assert.equal(none.isRevoked(kind, 'x'), false);
  });

  test('fromCatalog maps the catalog field names to kinds', () => {
    const fromCatalog = StaticRevocations.fromCatalog({
      jti: new Set(['j']),
      applications: new Set(['a']),
      apiKeys: new Set(['k']),
    });
    assert.equal(fromCatalog.isRevoked('jti', 'j'), true);
    assert.equal(fromCatalog.isRevoked('application', 'a'), true);
    assert.equal(fromCatalog.isRevoked('api_key', 'k'), true);
    assert.equal(fromCatalog.isRevoked('api_key', 'a'), false);
    assert.deepEqual(
      REVOCATION_KINDS.map((kind) => fromCatalog.size(kind)),
      [1, 1, 1],
    );
  });

  test('the lists are copied: later changes to the input do not leak in', () => {
    const input = ['j-1'];
    const copy = new StaticRevocations({ jti: input });
    input.push('j-2');
    assert.equal(copy.isRevoked('jti', 'j-2'), false);
  });
});

describe('combineRevocations', () => {
  const a = new StaticRevocations({ jti: ['only-a'], application: ['both'] });
  const b = new StaticRevocations({ jti: ['only-b'], application: ['both'] });
  const c = new StaticRevocations({ api_key: ['only-c'] });
  const cases: [string, Revocations, Parameters<Revocations['isRevoked']>, boolean][] = [
    ['revoked by the first', combineRevocations(a, b), ['jti', 'only-a'], true],
    ['revoked by the second', combineRevocations(a, b), ['jti', 'only-b'], true],
    ['revoked by both', combineRevocations(a, b), ['application', 'both'], true],
    ['revoked by neither', combineRevocations(a, b), ['jti', 'other'], false],
    ['three sources, the third says so', combineRevocations(a, b, c), ['api_key', 'only-c'], true],
    ['three sources, none says so', combineRevocations(a, b, c), ['api_key', 'only-a'], false],
    ['no sources', combineRevocations(), ['jti', 'only-a'], false],
  ];
  for (const [name, combined, [kind, id], expected] of cases) {
    test(`${name}: ${kind} ${id} → ${expected}`, () => {
      assert.equal(combined.isRevoked(kind, id), expected);
    });
  }

  test('one source is returned as is', () => {
    assert.equal(combineRevocations(a), a);
  });

  test('a live source is consulted on every call', () => {
    const live = new Set<string>();
    const combined = combineRevocations(a, { isRevoked: (kind, id) => kind === 'jti' && live.has(id) });
    assert.equal(combined.isRevoked('jti', 'late'), false);
    live.add('late');
    assert.equal(combined.isRevoked('jti', 'late'), true);
  });
});

describe('revocation messages and keys', () => {
  const valid: [string, RevocationMessage][] = [
    ['{"op":"add","kind":"jti","id":"j"}', { op: 'add', kind: 'jti', id: 'j' }],
    [
      '{"op":"add","kind":"jti","id":"j","exp":1767225600000}',
      { op: 'add', kind: 'jti', id: 'j', exp: 1767225600000 },
    ],
    ['{"op":"remove","kind":"api_key","id":"k"}', { op: 'remove', kind: 'api_key', id: 'k' }],
    [
      '{"op":"remove","kind":"application","id":"a","src":"s","seq":3}',
      { op: 'remove', kind: 'application', id: 'a', src: 's', seq: 3 },
    ],
    ['{"op":"resync"}', { op: 'resync' }],
  ];
  for (const [text, expected] of valid) {
    test(`parses ${text}`, () => {
      assert.deepEqual(parseRevocationMessage(text), expected);
      assert.deepEqual(parseRevocationMessage(encodeRevocationMessage(expected)), expected);
    });
  }

  const invalid = [
    'not json',
    '[]',
    'null',
    '"add"',
    '{"op":"add","kind":"user","id":"u"}',
    '{"op":"add","kind":"jti","id":""}',
    '{"op":"add","kind":"jti","id":7}',
    '{"op":"add","kind":"jti","id":"j","exp":"soon"}',
    '{"op":"delete","kind":"jti","id":"j"}',
    '{"kind":"jti","id":"j"}',
  ];
  for (const text of invalid) {
    test(`rejects ${text}`, () => {
      assert.equal(parseRevocationMessage(text), null);
    });
  }

  test('keys share one hash tag (one Redis Cluster slot)', () => {
    assert.deepEqual(revocationKeys(), {
      jti: {
        permanent: '{portcullis:revoked}:jti',
        expiring: '{portcullis:revoked}:jti:expiring',
        revokedAt: '{portcullis:revoked}:jti:at',
      },
      application: {
        permanent: '{portcullis:revoked}:application',
        expiring: '{portcullis:revoked}:application:expiring',
        revokedAt: '{portcullis:revoked}:application:at',
      },
      api_key: {
        permanent: '{portcullis:revoked}:api_key',
        expiring: '{portcullis:revoked}:api_key:expiring',
        revokedAt: '{portcullis:revoked}:api_key:at',
      },
    });
    assert.equal(revocationKeys('tenant-a:{rev}').jti.permanent, 'tenant-a:{rev}:jti');
    assert.equal(revocationKeys('tenant-b').api_key.expiring, '{tenant-b}:api_key:expiring');
  });
});

// ---------------------------------------------------------------------------------------------
// RedisRevocations on real redis-server processes
