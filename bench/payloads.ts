// Envoy-shaped CheckRequests for the benchmark, encoded with Envoy's OFFICIAL protos and framed for
// gRPC (1 flag byte, 4 length bytes, the message), so the server sees exactly Envoy's bytes.
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadOfficialRoot } from '../test/contract/official-protos.js';
import { envoyRequest, type RequestSpec } from '../test/support/envoy-request.js';

const CERT = `-----BEGIN CERTIFICATE-----\n${'MIIDdzCCAl+gAwIBAgIUQk3l\n'.repeat(40)}-----END CERTIFICATE-----\n`;

/** Realistic extras Envoy forwards: ~2.5 KB per CheckRequest with the certificate. */
const EXTRA_HEADERS = {
  'accept-encoding': 'gzip, br',
  'x-forwarded-for': '192.0.2.10',
  'x-envoy-external-address': '192.0.2.10',
  traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  'x-forwarded-client-cert':
    'By=spiffe://gw;Hash=4a5b;Subject="CN=acme";URI=spiffe://partners.example.com/acme',
};

export function frame(spec: RequestSpec): Buffer {
  const type = loadOfficialRoot().lookupType('envoy.service.auth.v3.CheckRequest');
  const message = envoyRequest({
    certificate: encodeURIComponent(CERT),
    principal: 'spiffe://partners.example.com/acme',
    ...spec,
    headers: { ...EXTRA_HEADERS, ...spec.headers },
  });
  const bytes = type.encode(type.fromObject(message)).finish();
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  Buffer.from(bytes).copy(out, 5);
  return out;
}

interface SigningKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  key: ReturnType<typeof createPrivateKey>;
}

function signingKey(alg: 'RS256' | 'ES256'): SigningKey {
  const set = JSON.parse(readFileSync('examples/keys/signing-keys.json', 'utf8')) as {
    keys: ({ kid: string; alg: string } & Record<string, unknown>)[];
  };
  const jwk = set.keys.find((k) => k.alg === alg);
  if (!jwk) throw new Error(`no ${alg} key in examples/keys/signing-keys.json`);
  return { kid: jwk.kid, alg, key: createPrivateKey({ key: jwk as never, format: 'jwk' }) };
}

/** Tokens for the example issuer, signed with node:crypto directly (minting 20k must be quick). */
export function mintTokens(alg: 'RS256' | 'ES256', count: number, clientId: string): string[] {
  const k = signingKey(alg);
  const header = Buffer.from(JSON.stringify({ alg, kid: k.kid, typ: 'JWT' })).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    const claims = {
      iss: 'https://idp.example.com',
      aud: 'partner-api',
      client_id: clientId,
      sub: `user-${i}`,
      scope: 'orders',
      iat: now,
      exp: now + 3600,
      jti: randomUUID(),
    };
    const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const signature =
      alg === 'RS256'
        ? sign('sha256', Buffer.from(input), k.key)
        : sign('sha256', Buffer.from(input), { key: k.key, dsaEncoding: 'ieee-p1363' });
    tokens.push(`${input}.${signature.toString('base64url')}`);
  }
  return tokens;
}

/** A realistic order of about 4 KiB, valid against bench/schemas/order.json (the full case's body). */
export function order4k() {
  const lines = Array.from({ length: 40 }, (_, i) => ({
    sku: `SKU-${String(i).padStart(6, '0')}`,
    quantity: (i % 7) + 1,
    price: 19.99 + i,
    note: 'deliver to the loading dock, gate 4',
  }));
  return { order_id: 'ORD-20261128', currency: 'EUR', lines };
}
