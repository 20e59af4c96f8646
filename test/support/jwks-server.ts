// Real keys, real tokens and a real JWKS endpoint for identity tests. The server listens on
// 127.0.0.1:0, serves whatever key set it is given on any path, counts the requests it receives and
// can misbehave on demand: HTTP 500, a garbage body, a slow answer, or a request that never gets one.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';
import type { Clock } from '../../src/clock.js';
import type { KeyHeader, KeyLookup, KeySet } from '../../src/identity/jwks.js';

export type TestAlg = 'RS256' | 'PS256' | 'ES256';

export interface TestKey {
  readonly kid: string;
  readonly alg: TestAlg;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** The public JWK as a JWKS publishes it: kid, alg and use set. */
  readonly publicJwk: JWK;
  /** The private JWK (kid, alg and use set). */
  readonly privateJwk: JWK;
}

let counter = 0;

/** A fresh key pair (RSA keys are 2048 bits). The kid defaults to `<alg>-<n>`. */
export async function generateTestKey(alg: TestAlg, kid?: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const id = kid ?? `${alg.toLowerCase()}-${++counter}`;
  const meta = { kid: id, alg, use: 'sig' };
  return {
    kid: id,
    alg,
    privateKey,
    publicKey,
    publicJwk: { ...(await exportJWK(publicKey)), ...meta },
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
  };
}

/** The JWKS publishing these keys' public halves. */
export function jwksOf(...keys: readonly TestKey[]): JSONWebKeySet {
  return { keys: keys.map((k) => k.publicJwk) };
}

/**
 * A token signed by `key`. The protected header is `{alg, kid, typ: 'JWT'}` overlaid with `header`
 * (set a member to undefined to drop it). Any `crit` members are declared recognised to jose so
 * that it signs them; verifiers must still refuse them.
 */
export async function mintToken(
  key: TestKey,
  claims: JWTPayload,
  header: Readonly<Record<string, unknown>> = {},
): Promise<string> {
  const protectedHeader = { alg: key.alg, kid: key.kid, typ: 'JWT', ...header } as { alg: string };
  const crit = Array.isArray(header.crit)
    ? Object.fromEntries(header.crit.map((name) => [name, true]))
    : undefined;
  return new SignJWT(claims)
    .setProtectedHeader(protectedHeader)
    .sign(key.privateKey, crit ? { crit } : undefined);
}

/** A token assembled by hand: any header, any payload, any signature (base64url text, default empty). */
export function rawToken(header: unknown, claims: unknown, signature = ''): string {
  const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${segment(header)}.${segment(claims)}.${signature}`;
}

export type JwksMode = 'ok' | 'error' | 'garbage' | 'slow' | 'hang';

export interface JwksServer {
  /** `http://127.0.0.1:<port>/jwks.json` */
  readonly url: string;
  /** Requests received so far, whatever the answer. */
  readonly requests: number;
  /** How the next requests are answered. */
  mode: JwksMode;
  /** Body sent in `garbage` mode. */
  garbage: string;
  /** How long `slow` mode waits before sending the key set. */
  slowMs: number;
  /** Replace the published key set. */
  setKeys(jwks: JSONWebKeySet | readonly TestKey[]): void;
  /** Stops listening and drops every connection (hanging requests included). */
  close(): Promise<void>;
}

export async function startJwksServer(initial: JSONWebKeySet | readonly TestKey[] = []): Promise<JwksServer> {
  let body = toBody(initial);
  let requests = 0;
  let closed = false;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests += 1;
    req.resume();
    switch (state.mode) {
      case 'ok':
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        return;
      case 'error':
        res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
        return;
      case 'garbage':
        res.writeHead(200, { 'content-type': 'application/json' }).end(state.garbage);
        return;
      case 'slow': {
        const timer = setTimeout(() => {
          if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        }, state.slowMs);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      case 'hang':
        return; // Never answered; close() drops the connection.
    }
  });
  const state: JwksServer & { mode: JwksMode; garbage: string; slowMs: number } = {
    url: '',
    mode: 'ok',
    garbage: '<html>definitely not a key set</html>',
    slowMs: 400,
    get requests() {
      return requests;
    },
    setKeys(jwks) {
      body = toBody(jwks);
    },
    async close() {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
    },
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  Object.defineProperty(state, 'url', { value: `http://127.0.0.1:${port}/jwks.json` });
  return state;
}

function toBody(jwks: JSONWebKeySet | readonly TestKey[]): string {
  return JSON.stringify(Array.isArray(jwks) ? jwksOf(...(jwks as readonly TestKey[])) : jwks);
}

/** A clock that moves only when told. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
}

export function fakeClock(startMs = Date.UTC(2026, 0, 15, 12, 0, 0)): FakeClock {
  let now = startMs;
  return {
    now: () => now,
    advance(ms) {
      now += ms;
    },
    set(ms) {
      now = ms;
    },
  };
}

/** A key set that counts the lookups reaching it (a JWT cache hit makes none). */
export class CountingKeySet implements KeySet {
  calls = 0;
  constructor(private readonly inner: KeySet) {}
  keyFor(header: KeyHeader): Promise<KeyLookup> {
    this.calls += 1;
    return this.inner.keyFor(header);
  }
}
