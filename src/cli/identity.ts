// `portcullis key create`, `token mint` and the Redis side of `revoke|unrevoke`: identity chores
// from the command line.
import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { importJWK, type JWK, SignJWT } from 'jose';
import { PEPPER_ENV, SERVE_ENV } from '../config.js';
import { catalogEntry, generateApiKey } from '../identity/apikeys.js';
import { loadPepper } from '../identity/pepper.js';
import {
  REVOCATION_KINDS,
  type RevocationKind,
  revokeInRedis,
  unrevokeInRedis,
} from '../identity/revocation.js';
import { UsageError } from './check.js';
import { KEY_HELP, TOKEN_HELP } from './help.js';

export const EXAMPLE_SIGNING_KEYS = fileURLToPath(
  new URL('../../examples/keys/signing-keys.json', import.meta.url),
);

export interface MintOptions {
  readonly keysFile: string;
  readonly kid: string | undefined;
  readonly issuer: string;
  readonly audience: string;
  readonly clientId: string;
  readonly subject: string | undefined;
  readonly scope: string | undefined;
  readonly ttlSeconds: number;
  readonly certFile: string | undefined;
  readonly authTime: number | undefined;
  readonly acr: string | undefined;
  readonly claims: readonly string[];
  readonly nowSeconds: number;
}

/** Signs a token with a private JWK from `keysFile` (the example issuer's keys by default). */
export async function mintToken(o: MintOptions): Promise<string> {
  const set = JSON.parse(await readFile(o.keysFile, 'utf8')) as { keys?: JWK[] };
  const jwk = (set.keys ?? []).find((k) => (o.kid === undefined ? k.d !== undefined : k.kid === o.kid));
  if (!jwk?.alg || !jwk.kid)
    throw new UsageError(`no private key${o.kid ? ` with kid "${o.kid}"` : ''} in ${o.keysFile}`);
  const claims: Record<string, unknown> = { client_id: o.clientId, jti: randomUUID() };
  if (o.scope) claims.scope = o.scope;
  if (o.authTime !== undefined) claims.auth_time = o.authTime;
  if (o.acr) claims.acr = o.acr;
  if (o.certFile) {
    const der = new X509Certificate(await readFile(o.certFile)).raw;
    claims.cnf = { 'x5t#S256': createHash('sha256').update(der).digest('base64url') };
  }
  for (const pair of o.claims) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--claim expects name=value, got "${pair}"`);
    claims[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, typ: 'JWT' })
    .setIssuer(o.issuer)
    .setAudience(o.audience)
    .setIssuedAt(o.nowSeconds)
    .setExpirationTime(o.nowSeconds + o.ttlSeconds);
  if (o.subject) jwt.setSubject(o.subject);
  return jwt.sign(await importJWK(jwk, jwk.alg));
}

export function parseKind(kind: string | undefined): RevocationKind {
  if (!kind || !(REVOCATION_KINDS as readonly string[]).includes(kind)) {
    throw new UsageError(`KIND must be one of ${REVOCATION_KINDS.join(', ')}, got "${kind ?? ''}"`);
  }
  return kind as RevocationKind;
}

/** Writes a revocation (or lifts one) in Redis; every running portcullis applies it within a second. */
/** One short-lived Redis connection for a CLI command: no offline queue, one retry, always closed. */
export async function withRedis<T>(redisUrl: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

export function changeRevocation(
  redisUrl: string,
  op: 'revoke' | 'unrevoke',
  kind: RevocationKind,
  id: string,
  ttlSeconds: number | undefined,
): Promise<void> {
  return withRedis(redisUrl, async (redis) => {
    if (op === 'revoke') await revokeInRedis(redis, kind, id, { now: Date.now(), ttlSeconds });
    else await unrevokeInRedis(redis, kind, id);
  });
}

export async function keyCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      partner: { type: 'string' },
      id: { type: 'string' },
      expires: { type: 'string' },
      'pepper-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (sub !== 'create' || values.help || !values.partner) {
    process.stderr.write(KEY_HELP);
    return values.help ? 0 : 2;
  }
  if (values.expires !== undefined && Number.isNaN(Date.parse(values.expires))) {
    throw new UsageError(`--expires must be an ISO 8601 date, got "${values.expires}"`);
  }
  const pepperFile = values['pepper-file'] ?? process.env[SERVE_ENV.apiKeyPepperFile] ?? '';
  // No fallback to the example pepper here: a production key hashed with it would never verify.
  const pepper = await loadPepper({ apiKeyPepperFile: pepperFile }, process.env);
  if (!pepper) throw new UsageError(`no pepper: pass --pepper-file or set ${PEPPER_ENV}`);
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  const id = values.id ?? `${values.partner}-key-${day}`;
  const secret = generateApiKey();
  process.stdout.write(
    `API key for partner ${values.partner} (shown once, stored nowhere: hand it over now):\n\n  ${secret}\n\n` +
      `Add to the catalog under the partner ${values.partner}, identities.api_keys:\n\n` +
      `${catalogEntry(id, secret, pepper, values.expires)
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n')}\n`,
  );
  return 0;
}

export async function tokenCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      'client-id': { type: 'string' },
      sub: { type: 'string' },
      scope: { type: 'string' },
      ttl: { type: 'string', default: '600' },
      cert: { type: 'string' },
      'auth-time': { type: 'string' },
      acr: { type: 'string' },
      claim: { type: 'string', multiple: true },
      issuer: { type: 'string', default: 'https://idp.example.com' },
      audience: { type: 'string', default: 'partner-api' },
      keys: { type: 'string', default: EXAMPLE_SIGNING_KEYS },
      kid: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (sub !== 'mint' || values.help || !values['client-id']) {
    process.stderr.write(TOKEN_HELP);
    return values.help ? 0 : 2;
  }
  const now = Math.floor(Date.now() / 1000);
  const seconds = (flag: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    if (!/^\d{1,9}$/.test(text)) throw new UsageError(`--${flag} must be a number of seconds, got "${text}"`);
    return Number(text);
  };
  const ago = seconds('auth-time', values['auth-time']);
  const jwt = await mintToken({
    keysFile: values.keys,
    kid: values.kid,
    issuer: values.issuer,
    audience: values.audience,
    clientId: values['client-id'],
    subject: values.sub,
    scope: values.scope,
    ttlSeconds: seconds('ttl', values.ttl) ?? 600,
    certFile: values.cert,
    authTime: ago === undefined ? undefined : now - ago,
    acr: values.acr,
    claims: values.claim ?? [],
    nowSeconds: now,
  });
  process.stdout.write(`${jwt}\n`);
  return 0;
}
