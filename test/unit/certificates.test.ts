// Client certificates as Envoy hands them over: CertificateReader on real certificates made by the
// openssl CLI (test/support/certs.ts), parseXfcc on x-forwarded-client-cert values in Envoy's own
// format, and the escaping of WWW-Authenticate challenges.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CertificateReader, parseXfcc } from '../../src/identity/certificates.js';
import { challenge, quoted } from '../../src/identity/challenge.js';
import { clientCertificate } from '../support/certs.js';

const ACME_SPIFFE = 'spiffe://partners.example.com/acme';

describe('CertificateReader', () => {
  const CASES = [
    {
      name: 'URI SAN (SPIFFE) wins over DNS SAN and subject',
      spec: { cn: 'acme', subject: { O: 'Acme' }, uris: [ACME_SPIFFE], dns: ['acme.example.com'] },
      principal: ACME_SPIFFE,
      spiffeId: ACME_SPIFFE,
    },
    {
      name: 'the first URI SAN is the principal',
      spec: { cn: 'acme', uris: [ACME_SPIFFE, 'spiffe://partners.example.com/other'] },
      principal: ACME_SPIFFE,
      spiffeId: ACME_SPIFFE,
    },
    {
      name: 'a non-SPIFFE URI SAN is the principal but no SPIFFE id',
      spec: { cn: 'acme', uris: ['https://acme.example.com/client'], dns: ['acme.example.com'] },
      principal: 'https://acme.example.com/client',
      spiffeId: null,
    },
    {
      name: 'DNS SAN when there is no URI SAN',
      spec: { cn: 'acme', subject: { O: 'Acme' }, dns: ['client.acme.example.com', 'b.acme.example.com'] },
      principal: 'client.acme.example.com',
      spiffeId: null,
    },
    {
      name: 'the subject (RFC 2253 order, most specific first) when there is no SAN',
      spec: { cn: 'acme', subject: { C: 'FR', O: 'Acme' } },
      principal: 'CN=acme,O=Acme,C=FR',
      spiffeId: null,
    },
    {
      name: 'a subject with a comma in a value keeps it escaped, as Envoy prints it',
      spec: { cn: 'acme', subject: { O: 'Acme, Inc.' } },
      principal: 'CN=acme,O=Acme\\, Inc.',
      spiffeId: null,
    },
  ] as const;

  for (const { name, spec, principal, spiffeId } of CASES) {
    it(name, () => {
      const cert = clientCertificate(spec);
      const read = new CertificateReader().read(cert.pem);
      assert.ok(read, 'the certificate parses');
      assert.equal(read.principal, principal);
      assert.equal(read.spiffeId, spiffeId);
      assert.equal(read.subject, cert.subject);
      // Computed by openssl (DER) + a SHA-256 in the helper, not by src/.
      assert.equal(read.thumbprint, cert.thumbprint);
    });
  }

  it('two certificates with the same names have different thumbprints', () => {
    const spec = { cn: 'acme', uris: [ACME_SPIFFE] };
    const a = new CertificateReader().read(clientCertificate(spec).pem);
    const b = new CertificateReader().read(clientCertificate({ ...spec, variant: 'second key' }).pem);
    assert.equal(a?.principal, b?.principal);
    assert.notEqual(a?.thumbprint, b?.thumbprint);
  });

  it('reads the PEM Envoy sends once it is URL-decoded', () => {
    const cert = clientCertificate({ cn: 'acme', uris: [ACME_SPIFFE] });
    assert.notEqual(cert.urlEncoded, cert.pem);
    assert.equal(
      new CertificateReader().read(decodeURIComponent(cert.urlEncoded))?.thumbprint,
      cert.thumbprint,
    );
  });

  const GARBAGE: ReadonlyArray<readonly [string, string]> = [
    ['empty', ''],
    ['not PEM', 'hello'],
    ['the URL-encoded form, not decoded', clientCertificate({ cn: 'acme', uris: [ACME_SPIFFE] }).urlEncoded],
    ['a PEM with a corrupted body', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
    [
      'a truncated PEM',
      clientCertificate({ cn: 'acme', uris: [ACME_SPIFFE] })
        .pem.split('\n')
        .filter((_, i) => i !== 3)
        .join('\n'),
    ],
  ];
  for (const [name, pem] of GARBAGE) {
    it(`garbage → null: ${name}`, () => {
      const reader = new CertificateReader();
      assert.equal(reader.read(pem), null);
      assert.equal(reader.read(pem), null, 'a cached failure is still null');
    });
  }

  it('the cache returns the same frozen object for the same PEM', () => {
    const reader = new CertificateReader();
    const pem = clientCertificate({ cn: 'acme', uris: [ACME_SPIFFE] }).pem;
    const first = reader.read(pem);
    assert.ok(first);
    assert.equal(reader.read(pem), first);
    assert.ok(Object.isFrozen(first));
    // Another reader parses on its own: equal, not the same object.
    const other = new CertificateReader().read(pem);
    assert.notEqual(other, first);
    assert.deepEqual(other, first);
  });

  it('the cache is bounded: an evicted entry is parsed again, to an equal value', () => {
    const reader = new CertificateReader(1);
    const a = clientCertificate({ cn: 'acme', uris: [ACME_SPIFFE] });
    const b = clientCertificate({ cn: 'globex', uris: ['spiffe://partners.example.com/globex'] });
    const first = reader.read(a.pem);
    assert.equal(reader.read(b.pem)?.thumbprint, b.thumbprint);
    const again = reader.read(a.pem);
    assert.notEqual(again, first, 'evicted by the second certificate');
    assert.deepEqual(again, first);
  });
});

describe('parseXfcc', () => {
  const HASH = 'a'.repeat(16) + '0123456789abcdef'.repeat(3);
  const HASH_B64URL = Buffer.from(HASH, 'hex').toString('base64url');
  const BY = 'By=spiffe://cluster.local/ns/gw/sa/envoy';

  const CASES: ReadonlyArray<{
    name: string;
    header: string;
    expected: { principal: string; thumbprint: string } | null;
  }> = [
    {
      name: 'Envoy SANITIZE_SET: URI is the principal, Hash converted from hex to base64url',
      header: `${BY};Hash=${HASH};Subject="CN=acme,O=x";URI=${ACME_SPIFFE};DNS=acme.example.com`,
      expected: { principal: ACME_SPIFFE, thumbprint: HASH_B64URL },
    },
    {
      name: 'upper-case hex Hash',
      header: `${BY};Hash=${HASH.toUpperCase()};URI=${ACME_SPIFFE}`,
      expected: { principal: ACME_SPIFFE, thumbprint: HASH_B64URL },
    },
    {
      name: 'DNS when there is no URI',
      header: `${BY};Hash=${HASH};Subject="CN=acme,O=x";DNS=acme.example.com;DNS=b.example.com`,
      expected: { principal: 'acme.example.com', thumbprint: HASH_B64URL },
    },
    {
      name: 'the first URI when there are several',
      header: `${BY};Hash=${HASH};URI=${ACME_SPIFFE};URI=spiffe://partners.example.com/other`,
      expected: { principal: ACME_SPIFFE, thumbprint: HASH_B64URL },
    },
    {
      name: 'the quoted Subject when there is no SAN (quoted commas and semicolons stay inside)',
      header: `${BY};Hash=${HASH};Subject="CN=acme,O=Acme\\, Inc.;x"`,
      expected: { principal: 'CN=acme,O=Acme, Inc.;x', thumbprint: HASH_B64URL },
    },
    {
      name: 'an escaped quote inside the Subject',
      header: `Hash=${HASH};Subject="CN=say \\"hi\\",O=x"`,
      expected: { principal: 'CN=say "hi",O=x', thumbprint: HASH_B64URL },
    },
    {
      name: 'several elements: the LAST one (added by the nearest Envoy) counts',
      header: [
        `By=spiffe://edge;Hash=${'b'.repeat(64)};Subject="CN=mallory,O=Evil, Corp";URI=spiffe://partners.example.com/mallory`,
        `${BY};Hash=${HASH};Subject="CN=acme,O=Acme, Inc";URI=${ACME_SPIFFE}`,
      ].join(','),
      expected: { principal: ACME_SPIFFE, thumbprint: HASH_B64URL },
    },
    {
      name: 'several elements with quoted commas in the last one',
      header: `URI=spiffe://partners.example.com/mallory,${BY};Hash=${HASH};Subject="CN=acme,O=A, B, C"`,
      expected: { principal: 'CN=acme,O=A, B, C', thumbprint: HASH_B64URL },
    },
    {
      name: 'no Hash: a principal without a thumbprint',
      header: `${BY};URI=${ACME_SPIFFE}`,
      expected: { principal: ACME_SPIFFE, thumbprint: '' },
    },
    {
      name: 'a Hash that is not 64 hex digits is no thumbprint',
      header: `${BY};Hash=${HASH.slice(2)};URI=${ACME_SPIFFE}`,
      expected: { principal: ACME_SPIFFE, thumbprint: '' },
    },
    {
      name: 'a Hash with a non-hex digit is no thumbprint',
      header: `${BY};Hash=${HASH.slice(1)}g;URI=${ACME_SPIFFE}`,
      expected: { principal: ACME_SPIFFE, thumbprint: '' },
    },
    { name: 'malformed: empty', header: '', expected: null },
    { name: 'malformed: only separators', header: ' , ; ,', expected: null },
    { name: 'malformed: not key=value', header: 'garbage', expected: null },
    { name: 'malformed: a pair without "="', header: `${BY};junk;URI=${ACME_SPIFFE}`, expected: null },
    { name: 'malformed: an empty key', header: `=x;URI=${ACME_SPIFFE}`, expected: null },
    { name: 'malformed: nothing names the client', header: `${BY};Hash=${HASH}`, expected: null },
    { name: 'malformed: empty URI, DNS and Subject', header: `${BY};URI=;DNS=;Subject=""`, expected: null },
    {
      name: 'the last element is what counts: a good first element does not rescue a bad last one',
      header: `${BY};URI=${ACME_SPIFFE},${BY};Hash=${HASH}`,
      expected: null,
    },
  ];
  for (const { name, header, expected } of CASES) {
    it(name, () => {
      assert.deepEqual(parseXfcc(header), expected);
    });
  }

  it('malformed: an unterminated quote is refused, not read as a principal starting with a quote', () => {
    assert.equal(parseXfcc(`${BY};Hash=${HASH};Subject="CN=acme,O=x`), null);
    assert.equal(parseXfcc(`${BY};URI=${ACME_SPIFFE},${BY};Subject="CN=mallory`), null);
  });

  it('agrees with a real certificate: the Hash Envoy writes is the thumbprint the reader computes', () => {
    const cert = clientCertificate({ cn: 'acme', subject: { O: 'Acme' }, uris: [ACME_SPIFFE] });
    const parsed = parseXfcc(`${BY};Hash=${cert.hashHex};Subject="${cert.subject}";URI=${ACME_SPIFFE}`);
    assert.deepEqual(parsed, { principal: ACME_SPIFFE, thumbprint: cert.thumbprint });
    assert.equal(new CertificateReader().read(cert.pem)?.thumbprint, parsed?.thumbprint);
  });
});

describe('WWW-Authenticate challenges', () => {
  const QUOTED: ReadonlyArray<readonly [string, string, string]> = [
    ['plain text', 'partner-api', '"partner-api"'],
    ['empty', '', '""'],
    ['a double quote is escaped', 'say "hi"', '"say \\"hi\\""'],
    ['a backslash is escaped', 'a\\b', '"a\\\\b"'],
    ['a backslash before a quote: both escaped', '\\"', '"\\\\\\""'],
    ['CR and LF are dropped (no header injection)', 'x\r\nSet-Cookie: a=b', '"xSet-Cookie: a=b"'],
    ['NUL, TAB and DEL are dropped', 'a\u0000b\tc\u007fd', '"abcd"'],
    ['printable ASCII punctuation is kept', "a,b;c=d 'e'", '"a,b;c=d \'e\'"'],
  ];
  for (const [name, input, expected] of QUOTED) {
    it(`quoted(): ${name}`, () => {
      const out = quoted(input);
      assert.equal(out, expected);
      assert.doesNotMatch(out, /[\r\n]/);
    });
  }

  it('challenge(): parameters in order, undefined ones left out', () => {
    assert.equal(
      challenge('Bearer', {
        realm: 'partner-api',
        error: 'invalid_token',
        error_description: undefined,
        scope: 'orders:read orders:write',
      }),
      'Bearer realm="partner-api", error="invalid_token", scope="orders:read orders:write"',
    );
  });

  it('challenge(): a scheme without parameters is the bare scheme', () => {
    assert.equal(challenge('APIKey', {}), 'APIKey');
    assert.equal(challenge('Bearer', { realm: undefined }), 'Bearer');
  });

  it('challenge(): every value is escaped, so a hostile value cannot add a parameter or a header', () => {
    const value = challenge('Bearer', { realm: 'r", error="none\r\nX-Evil: 1' });
    assert.equal(value, 'Bearer realm="r\\", error=\\"noneX-Evil: 1"');
    assert.doesNotMatch(value, /[\r\n]/);
  });
});
