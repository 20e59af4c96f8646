// `portcullis revoke|unrevoke KIND ID` and `portcullis revoke list`: what a revocation names is
// checked against the catalog when one is given, and what is revoked can be read back.

import { parseArgs } from 'node:util';
import { SERVE_ENV } from '../config.js';
import { listRevocations, type RevocationEntry, type RevocationKind } from '../identity/revocation.js';
import type { Catalog } from '../policy/catalog.js';
import { CatalogError, formatIssue, loadCatalogFile } from '../policy/load.js';
import { humanDuration } from '../quota/reset.js';
import { UsageError } from './check.js';
import { REVOKE_HELP } from './help.js';
import { changeRevocation, parseKind, withRedis } from './identity.js';

/** The ids of `kind` the catalog knows, each with its partner; null when the catalog cannot know (jti). */
export function knownIds(catalog: Catalog, kind: RevocationKind): Map<string, string> | null {
  if (kind === 'jti') return null;
  const ids = new Map<string, string>();
  if (kind === 'api_key') {
    for (const key of catalog.apiKeysByHash.values()) ids.set(key.id, key.partner.id);
  } else {
    // Issuer-qualified applications are keyed `issuer NUL client_id`: the client id is what tokens carry.
    for (const [key, partner] of catalog.partnersByApplication)
      ids.set(key.split('\u0000').at(-1) ?? key, partner.id);
  }
  return ids;
}

export type IdCheck =
  | { readonly kind: 'known'; readonly partner: string }
  | { readonly kind: 'unknown'; readonly message: string }
  | { readonly kind: 'unchecked'; readonly message: string };

/** Is `id` one the catalog has? The message says what to do when it is not. */
export function checkRevocationId(
  catalog: Catalog | null,
  catalogFile: string,
  kind: RevocationKind,
  id: string,
): IdCheck {
  if (!catalog) {
    return {
      kind: 'unchecked',
      message: `${kind} "${id}" not checked against a catalog (pass --config FILE)`,
    };
  }
  const ids = knownIds(catalog, kind);
  if (!ids) {
    return { kind: 'unchecked', message: `token ids (jti) are not in the catalog: "${id}" not checked` };
  }
  const partner = ids.get(id);
  if (partner !== undefined) return { kind: 'known', partner };
  const near = [...ids.keys()].filter((known) => similar(known, id)).slice(0, 3);
  return {
    kind: 'unknown',
    message:
      `${kind} "${id}" is not in ${catalogFile}` +
      (near.length > 0 ? ` (did you mean ${near.map((n) => `"${n}"`).join(', ')}?)` : '') +
      ': nothing revoked. Check the id, or pass --force to revoke it anyway.',
  };
}

/** Shares a prefix of 4 characters or more, or one contains the other: worth suggesting. */
function similar(a: string, b: string): boolean {
  if (a.includes(b) || b.includes(a)) return true;
  let common = 0;
  while (common < a.length && a[common] === b[common]) common++;
  return common >= 4;
}

/** Reads every revocation in force from Redis. */
export function readRevocations(redisUrl: string, now: number): Promise<RevocationEntry[]> {
  return withRedis(redisUrl, (redis) => listRevocations(redis, { now }));
}

/** The table `revoke list` prints; with a catalog, the partner each id belongs to. */
export function renderRevocations(
  entries: readonly RevocationEntry[],
  now: number,
  catalog: Catalog | null,
): string {
  if (entries.length === 0)
    return "nothing is revoked in Redis (the catalog's revocations: lists apply too)\n";
  const partnerOf = (e: RevocationEntry) =>
    catalog ? (knownIds(catalog, e.kind)?.get(e.id) ?? '-') : undefined;
  const head = ['KIND', 'ID', ...(catalog ? ['PARTNER'] : []), 'REVOKED AT', 'TTL', 'EXPIRES AT'];
  const rows = entries.map((e) => [
    e.kind,
    e.id,
    ...(catalog ? [partnerOf(e) ?? '-'] : []),
    e.revokedAt === null ? 'unknown' : isoSeconds(e.revokedAt),
    e.expiresAt === null ? 'permanent' : humanDuration((e.expiresAt - now) / 1000),
    e.expiresAt === null ? '-' : isoSeconds(e.expiresAt),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[head, ...rows].map(line).join('\n')}\n${entries.length} revoked\n`;
}

const isoSeconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export async function revokeCommand(
  command: 'revoke' | 'unrevoke',
  args: readonly string[],
): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    options: {
      ttl: { type: 'string' },
      'redis-url': { type: 'string' },
      config: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(REVOKE_HELP);
    return 0;
  }
  const redisUrl = values['redis-url'] ?? process.env[SERVE_ENV.redisUrl];
  const catalogFile = values.config ?? (process.env[SERVE_ENV.catalogFile] || undefined);
  const catalog = catalogFile === undefined ? null : await catalogForCli(catalogFile);
  if (catalog === 'invalid') return 2;
  if (command === 'revoke' && positionals[0] === 'list') {
    if (positionals.length > 1)
      throw new UsageError('usage: portcullis revoke list [--redis-url URL] [--json]');
    if (!redisUrl) throw new UsageError(`no Redis: pass --redis-url or set ${SERVE_ENV.redisUrl}`);
    const now = Date.now();
    const entries = await readRevocations(redisUrl, now);
    process.stdout.write(
      values.json
        ? `${JSON.stringify(
            entries.map((e) => ({
              kind: e.kind,
              id: e.id,
              revoked_at: e.revokedAt === null ? null : new Date(e.revokedAt).toISOString(),
              expires_at: e.expiresAt === null ? null : new Date(e.expiresAt).toISOString(),
              ttl_seconds: e.expiresAt === null ? null : Math.max(0, Math.ceil((e.expiresAt - now) / 1000)),
            })),
            null,
            2,
          )}\n`
        : renderRevocations(entries, now, catalog),
    );
    return 0;
  }
  const [kindText, id, ...extra] = positionals;
  if (!id || extra.length > 0) throw new UsageError(`usage: portcullis ${command} KIND ID`);
  if (!redisUrl) throw new UsageError(`no Redis: pass --redis-url or set ${SERVE_ENV.redisUrl}`);
  const ttl = values.ttl === undefined ? undefined : Number(values.ttl);
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl > 0)) {
    throw new UsageError(`--ttl must be a positive number of seconds, got "${values.ttl}"`);
  }
  const kind = parseKind(kindText);
  let owner = '';
  if (command === 'revoke') {
    const checked = checkRevocationId(catalog, catalogFile ?? '', kind, id);
    if (checked.kind === 'known') owner = ` (partner ${checked.partner})`;
    else if (checked.kind === 'unchecked') process.stderr.write(`portcullis: note: ${checked.message}\n`);
    else if (!values.force) {
      process.stderr.write(`portcullis: warning: ${checked.message}\n`);
      return 1;
    } else
      process.stderr.write(
        `portcullis: warning: ${checked.message.replace(/: nothing revoked.*$/, '')}; revoking anyway (--force)\n`,
      );
  }
  await changeRevocation(redisUrl, command, kind, id, ttl);
  const until =
    ttl === undefined
      ? ''
      : `, for ${humanDuration(ttl)} (until ${new Date(Date.now() + ttl * 1000).toISOString()})`;
  process.stdout.write(
    `${command === 'revoke' ? 'revoked' : 'unrevoked'} ${kind} ${id}${owner}${command === 'revoke' ? until : ''}\n`,
  );
  return 0;
}

/** The catalog a command checks against; 'invalid' after printing its problems. */
async function catalogForCli(file: string): Promise<Catalog | 'invalid'> {
  try {
    return await loadCatalogFile(file);
  } catch (err: unknown) {
    if (!(err instanceof CatalogError)) throw err;
    for (const issue of err.issues) process.stderr.write(`${formatIssue(issue)}\n`);
    process.stderr.write(`portcullis: invalid catalog ${file}\n`);
    return 'invalid';
  }
}
