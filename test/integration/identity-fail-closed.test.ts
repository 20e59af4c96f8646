// Identity fails closed whenever a credential is presented (issue 12, findings 1, 2, 11 and the
// percent-encoded query token). Through the real server, with Envoy's official protos, a 250 ms
// gRPC deadline as Envoy sends it, and real JWKS endpoints on loopback: one unreachable, one that
// answers its first request and then slows to 400 ms. Every route here says `on_error: allow`, so
// any identity failure that slipped into on_error would show as `allowed_on_error`.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JWTPayload } from 'jose';
import { DependencyUnavailable } from '../../src/stage.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { envoyRequest, type RequestSpec } from '../support/envoy-request.js';
import {
  generateTestKey,
  type JwksServer,
  mintToken,
  rawToken,
  startJwksServer,
  type TestKey,
} from '../support/jwks-server.js';
import { OfficialCheckClient, type OfficialCheckResponse } from '../support/official-client.js';

const UP_ISS = 'https://up.example.test/';
const DOWN_ISS = 'https://down.example.test/';
const HUNG_ISS = 'https://hung.example.test/';
const AUD = 'https://api.example.test';
/** What Envoy sends by default (200 ms) and a little more: what the findings were proved with. */
const ENVOY_DEADLINE_MS = 250;

let signer: TestKey;
let slowJwks: JwksServer;
/** Never answers: the first fetch of its keys outlasts any Check. */
let hungJwks: JwksServer;
let downUrl = '';

before(async () => {
  signer = await generateTestKey('RS256', 'up-2026');
  slowJwks = await startJwksServer([signer]);
  hungJwks = await startJwksServer([signer]);
  hungJwks.mode = 'hang';
  // A port that was just free and is closed again: every fetch is refused.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  downUrl = `http://127.0.0.1:${port}/jwks.json`;
});

after(async () => {
  await slowJwks.close();
  await hungJwks.close();
});

function catalogText(o: { hung?: boolean } = {}): string {
  const hungIssuer = `
  - name: hung
    issuer: "${HUNG_ISS}"
    jwks: { url: "${hungJwks.url}", allow_http: true, cooldown_seconds: 1, timeout_ms: 2000 }
    audiences: ["${AUD}"]
    algorithms: [RS256]`;
  const hungRoute = `
  - name: hung-only
    match: { path: { prefix: /v1/hung } }
    on_error: allow
    identity: { jwt: { issuers: [hung] } }`;
  return `
version_name: identity-fail-closed
issuers:
  - name: up
    issuer: "${UP_ISS}"
    jwks: { url: "${slowJwks.url}", allow_http: true, cooldown_seconds: 1, timeout_ms: 2000 }
    audiences: ["${AUD}"]
    algorithms: [RS256]
  - name: down
    issuer: "${DOWN_ISS}"
    jwks: { url: "${downUrl}", allow_http: true, cooldown_seconds: 1, timeout_ms: 2000 }
    audiences: ["${AUD}"]
    algorithms: [RS256]
${o.hung ? hungIssuer : ''}
partners:
  - id: acme
    name: Acme
    identities:
      applications: [{ client_id: acme-app, issuer: up }]
routes:
  - name: up-only
    match: { path: { prefix: /v1/up } }
    on_error: allow
    identity: { jwt: { issuers: [up] } }
  - name: down-only
    match: { path: { prefix: /v1/down } }
    on_error: allow
    identity: { jwt: { issuers: [down] } }
${o.hung ? hungRoute : ''}
  - name: query
    match: { path: { prefix: /v1/query } }
    on_error: allow
    identity: { jwt: { issuers: [up], query_param: access_token } }
`;
}

const code = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields.code?.stringValue;
const problem = (res: OfficialCheckResponse) =>
  JSON.parse(res.denied_response?.body ?? '{}') as Record<string, unknown>;

function claims(extra: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return { iss: UP_ISS, aud: AUD, iat: now, exp: now + 600, client_id: 'acme-app', sub: 'alice', ...extra };
}

async function setup(t: TestContext, options: Parameters<typeof startTestApp>[1] = {}) {
  const server: TestApp = await startTestApp(t, { catalogText: catalogText(), ...options });
  const client = new OfficialCheckClient(server.address);
  t.after(() => client.close());
  // The channel's first call connects; do that outside Envoy's deadline.
  assert.equal(
    code(await client.check(envoyRequest({ path: '/v1/up/warm-up' }), 5000)),
    'credentials_missing',
  );
  // Envoy's deadline, as Envoy sends it. This process is also the server, on a shared machine: when
  // our own event loop stalls past the deadline, the client gives up before any answer — for Envoy
  // an RPC error, a 403 without failure_mode_allow. That proves nothing either way, so such a
  // call is sent again (a bounded number of times); what the server answers is what is asserted.
  const check = async (spec: RequestSpec, timeoutMs = ENVOY_DEADLINE_MS) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await client.check(envoyRequest(spec), timeoutMs);
      } catch (error: unknown) {
        if ((error as { code?: number }).code !== 4 || attempt === 10) throw error;
      }
    }
  };
  return { ...server, check };
}

describe('identity fails closed when a credential is presented', () => {
  test('finding 1: a forged token naming another, unreachable issuer is refused by the route issuer list, before any key lookup', async (t) => {
    slowJwks.mode = 'ok';
    const { check, logs } = await setup(t);
    // Signature "AAAA": nobody could verify it, and nobody should try.
    const forged = rawToken({ alg: 'RS256', kid: 'whatever' }, claims({ iss: DOWN_ISS }), 'AAAA');
    const res = await check({ path: '/v1/up/orders', headers: { authorization: `Bearer ${forged}` } });
    assert.equal(code(res), 'token_issuer_invalid');
    assert.equal(res.denied_response?.status.code, 'Unauthorized');
    assert.equal(res.ok_response, undefined);
    assert.match(String(logs.decisions().at(-1)?.reason), /issuer down is not trusted on this route/);
  });

  test("finding 1: keys of the route's own issuer unavailable → token_keys_unavailable (503), never allowed_on_error", async (t) => {
    slowJwks.mode = 'ok';
    const { check } = await setup(t);
    const forged = rawToken({ alg: 'RS256', kid: 'whatever' }, claims({ iss: DOWN_ISS }), 'AAAA');
    const res = await check({ path: '/v1/down/orders', headers: { authorization: `Bearer ${forged}` } });
    assert.equal(code(res), 'token_keys_unavailable');
    assert.equal(res.denied_response?.status.code, 'ServiceUnavailable');
    assert.equal(problem(res).code, 'token_keys_unavailable');
  });

  test('finding 2: after the cooldown, forged tokens with unknown kids against a slow JWKS are refused at once (token_key_unknown), a whole burst too', async (t) => {
    slowJwks.mode = 'ok';
    slowJwks.setKeys([signer]);
    const { check } = await setup(t);
    const genuine = await mintToken(signer, claims());
    assert.equal(
      code(await check({ path: '/v1/up/a', headers: { authorization: `Bearer ${genuine}` } }, 2000)),
      'allowed',
    );
    slowJwks.mode = 'slow';
    slowJwks.slowMs = 400;
    t.after(() => {
      slowJwks.mode = 'ok';
    });
    await sleep(1100); // past the 1 s cooldown: an unknown kid may trigger a refetch now

    const forger = await generateTestKey('RS256');
    const forged = await Promise.all(
      Array.from({ length: 21 }, () => mintToken(forger, claims(), { kid: `random-${randomUUID()}` })),
    );
    const [single = '', ...others] = forged;
    const first = await check({ path: '/v1/up/a', headers: { authorization: `Bearer ${single}` } });
    assert.equal(code(first), 'token_key_unknown');
    assert.equal(first.denied_response?.status.code, 'Unauthorized');

    // A burst, in two waves of ten: concurrent misses share the one refetch behind.
    const burst = [];
    for (const wave of [others.slice(0, 10), others.slice(10)]) {
      burst.push(
        ...(await Promise.all(
          wave.map((token) => check({ path: '/v1/up/a', headers: { authorization: `Bearer ${token}` } })),
        )),
      );
    }
    assert.deepEqual(new Set(burst.map(code)), new Set(['token_key_unknown']));
    // Genuine tokens still pass while the slow refetch runs behind.
    assert.equal(
      code(await check({ path: '/v1/up/b', headers: { authorization: `Bearer ${genuine}` } }, 2000)),
      'allowed',
    );
  });

  test("the deadline passing while the route's issuer keys are first fetched → identity_unavailable (503), never allowed_on_error", async (t) => {
    slowJwks.mode = 'ok';
    // Start-up waits 2 s for the hung endpoint's first fetch, in vain; the cooldown (1 s) is over by
    // then, so the next token starts another fetch and waits for it. Envoy's deadline comes first.
    const { check } = await setup(t, { catalogText: catalogText({ hung: true }) });
    const forged = rawToken({ alg: 'RS256', kid: 'k' }, claims({ iss: HUNG_ISS }), 'AAAA');
    const res = await check({ path: '/v1/hung/a', headers: { authorization: `Bearer ${forged}` } });
    assert.equal(code(res), 'identity_unavailable');
    assert.equal(res.denied_response?.status.code, 'ServiceUnavailable');
  });

  test('finding 11: an on_error allow strips the credential headers the route reads', async (t) => {
    slowJwks.mode = 'ok';
    const { check } = await setup(t, {
      stages: (defaults) => ({
        ...defaults,
        quota: () => {
          throw new DependencyUnavailable('redis', 'connection refused');
        },
      }),
    });
    const token = await mintToken(signer, claims());
    const res = await check({ path: '/v1/up/a', headers: { authorization: `Bearer ${token}` } }, 2000);
    assert.equal(code(res), 'allowed_on_error');
    assert.ok(res.ok_response?.headers_to_remove?.includes('authorization'), 'authorization removed');
  });

  test('suspicion b: a token in a percent-encoded parameter name (acc%65ss_token) is refused, not passed on', async (t) => {
    slowJwks.mode = 'ok';
    const { check } = await setup(t);
    const token = await mintToken(signer, claims());
    const plain = await check({ path: `/v1/query?access_token=${token}` }, 2000);
    assert.equal(code(plain), 'allowed');
    const encoded = await check({ path: `/v1/query?acc%65ss_token=${token}` }, 2000);
    // Envoy's query_parameters_to_remove matches the raw name: `access_token` would leave
    // `acc%65ss_token` in place, and the upstream would decode it into a token.
    assert.equal(code(encoded), 'token_in_query');
    assert.equal(encoded.ok_response, undefined);
  });
});
