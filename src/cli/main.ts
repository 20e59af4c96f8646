#!/usr/bin/env node
// The `portcullis` command: serve, check, policy validate.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { AggregatorRegistry } from 'prom-client';
import { startApp } from '../app.js';
import { otlpEndpoint, PEPPER_ENV, resolveServeConfig, SERVE_ENV, type ServeConfig } from '../config.js';
import { sendCheck } from '../envoy/client.js';
import { catalogEntry, generateApiKey } from '../identity/apikeys.js';
import { loadPepper, missingPepper, PepperError } from '../identity/pepper.js';
import { RedisRevocations } from '../identity/revocation.js';
import { createLogger } from '../observability/audit.js';
import type { Catalog } from '../policy/catalog.js';
import { CatalogError, formatIssue, loadCatalogFile } from '../policy/load.js';
import { watchCatalog } from '../policy/watch.js';
import { CHARGE_LUA } from '../quota/charge-script.js';
import {
  createRedisClient,
  parseRedisUrl,
  type RedisClient,
  RedisQuotaStore,
  waitForReady,
} from '../quota/redis-store.js';
import { humanDuration } from '../quota/reset.js';
import type { QuotaStatus } from '../quota/status.js';
import { buildCheckRequest, renderResponse, UsageError } from './check.js';
import {
  CHECK_HELP,
  HELP,
  helpFor,
  KEY_HELP,
  POLICY_HELP,
  QUOTA_HELP,
  REVOKE_HELP,
  SERVE_HELP,
  TOKEN_HELP,
} from './help.js';
import { changeRevocation, EXAMPLE_SIGNING_KEYS, mintToken, parseKind } from './identity.js';
import { policyDiff, policyTest } from './policy.js';
import { checkRevocationId, readRevocations, renderRevocations } from './revoke.js';
import { runPrimary, serveWorkerQueries, workersNeedSharedStore } from './workers.js';

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'check':
      return check(rest);
    case 'policy':
      return policy(rest);
    case 'key':
      return key(rest);
    case 'token':
      return token(rest);
    case 'revoke':
    case 'unrevoke':
      return revoke(command, rest);
    case 'quota':
      return quota(rest);
    case 'help':
    case '--help':
    case '-h':
    case undefined:
      process.stdout.write(helpFor(rest[0]));
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

/** How long `serve` waits for Redis before serving without it (it keeps trying in the background). */
const START_WAIT_MS = 5000;

async function serve(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      config: { type: 'string' },
      'grpc-address': { type: 'string' },
      transport: { type: 'string' },
      'admin-address': { type: 'string' },
      'log-level': { type: 'string' },
      'max-message-bytes': { type: 'string' },
      'drain-delay-ms': { type: 'string' },
      'shutdown-grace-ms': { type: 'string' },
      'api-key-pepper-file': { type: 'string' },
      'redis-url': { type: 'string' },
      workers: { type: 'string' },
      clamd: { type: 'string' },
      'clamd-max-bytes': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  const flags: Partial<Record<keyof ServeConfig, string>> = {};
  const set = (key: keyof ServeConfig, value: string | undefined) => {
    if (value !== undefined) flags[key] = value;
  };
  set('catalogFile', values.config);
  set('grpcAddress', values['grpc-address']);
  set('transport', values.transport);
  set('adminAddress', values['admin-address']);
  set('logLevel', values['log-level']);
  set('maxMessageBytes', values['max-message-bytes']);
  set('drainDelayMs', values['drain-delay-ms']);
  set('shutdownGraceMs', values['shutdown-grace-ms']);
  set('apiKeyPepperFile', values['api-key-pepper-file']);
  set('redisUrl', values['redis-url']);
  set('workers', values.workers);
  set('clamd', values.clamd);
  set('clamdMaxBytes', values['clamd-max-bytes']);
  let config: ServeConfig;
  try {
    config = resolveServeConfig(flags, process.env);
  } catch (err: unknown) {
    process.stderr.write(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  const unshared = workersNeedSharedStore(config.workers, config.redisUrl);
  if (unshared) {
    process.stderr.write(`portcullis: ${unshared}\n`);
    return 1;
  }
  const logger = createLogger(config.logLevel);
  const isWorker = cluster.isWorker;
  let catalog: Awaited<ReturnType<typeof loadCatalogFile>>;
  try {
    catalog = await loadCatalogFile(config.catalogFile);
  } catch (err: unknown) {
    if (!(err instanceof CatalogError)) throw err;
    logger.fatal({ issues: err.issues.map(formatIssue) }, 'invalid policy catalog');
    logger.flush();
    for (const issue of err.issues) process.stderr.write(`${formatIssue(issue)}\n`);
    return 1;
  }
  // Several workers: this process supervises them and serves the admin endpoints.
  if (config.workers > 1 && cluster.isPrimary) {
    const code = await runPrimary(config.workers, config.adminAddress, logger);
    logger.flush();
    return code;
  }

  // Signal handlers first: a SIGTERM that arrives while we start must still drain, and a SIGHUP
  // must reload, never kill (its default action).
  const signalled = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  let onHangup = () => {};
  process.on('SIGHUP', () => onHangup());
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  let revocations: RedisRevocations | undefined;
  let redis: RedisClient | undefined;
  let app: Awaited<ReturnType<typeof startApp>>;
  try {
    // No catalog configured at all: the embedded demo, whose example pepper comes with it.
    const embeddedExample = values.config === undefined && !process.env[SERVE_ENV.catalogFile];
    const apiKeyPepper = await loadPepper(
      { apiKeyPepperFile: config.apiKeyPepperFile, embeddedExample },
      process.env,
    );
    if (catalog.apiKeysByHash.size > 0 && !apiKeyPepper) {
      throw new PepperError(missingPepper(config.catalogFile, catalog.apiKeysByHash.size));
    }
    let quotaStore: RedisQuotaStore | undefined;
    if (config.redisUrl) {
      const client = createRedisClient(config.redisUrl);
      redis = client;
      client.on('error', () => {}); // reconnects by itself; failures surface per call, metered
      // The charge script is loaded on every (re)connection, so the first charge after a start or a
      // Redis restart is an EVALSHA that hits, not a NOSCRIPT and a second round trip.
      const loadScript = () => client.script('LOAD', CHARGE_LUA);
      client.on('ready', () => void loadScript().catch(() => {}));
      quotaStore = new RedisQuotaStore(client, {
        idempotencyMs: catalog.settings.quotas.idempotencySeconds * 1000,
      });
      // Live revocations speak to one Redis; a cluster URL keeps them to the catalog's lists.
      if (parseRedisUrl(config.redisUrl).kind === 'standalone') {
        revocations = new RedisRevocations({ url: config.redisUrl, logger });
      }
      // Start warm: Checks that arrive before the connection is up would fail and open the breaker.
      // A Redis that is down at start is not fatal, and neither is one that stays down: we serve,
      // quotas follow the routes' on_store_error and credentials that could be revoked get the
      // route's on_error until the revoked sets are loaded; both recover on their own (docs/operations.md).
      const [ready, loaded] = await Promise.allSettled([
        waitForReady(client, START_WAIT_MS).then(loadScript),
        revocations?.start({ timeoutMs: START_WAIT_MS }),
      ]);
      if (ready.status === 'rejected') {
        logger.warn(
          { err: String(ready.reason) },
          'quota store not reachable at start: serving with on_store_error until it is',
        );
      }
      if (loaded.status === 'rejected') {
        logger.warn(
          { err: String(loaded.reason) },
          'revocations not loaded at start: revocable credentials get on_error until they are',
        );
      }
    }
    app = await startApp({
      ...config,
      // A worker's admin endpoints are its primary's.
      adminAddress: isWorker ? '' : config.adminAddress,
      catalog,
      logger,
      apiKeyPepper,
      revocations,
      quotaStore,
      otlpEndpoint: otlpEndpoint(process.env),
      clamd: config.clamd ? { address: config.clamd, maxBytes: config.clamdMaxBytes } : undefined,
    });
  } catch (err: unknown) {
    // A configuration problem is one line that says what to set; anything else keeps its stack.
    logger.fatal(err instanceof PepperError ? { reason: err.message } : { err }, 'cannot start');
    logger.flush();
    process.stderr.write(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    await revocations?.close();
    redis?.disconnect();
    return 1;
  }
  // Every revocation this replica applies is logged (by RedisRevocations) and counted here.
  revocations?.onApplied((change) => app.metrics.revocationApplied(change.kind, change.op, change.source));
  if (isWorker) {
    // Constructing one installs prom-client's answer to the primary's metrics requests.
    new AggregatorRegistry();
    AggregatorRegistry.setRegistries([app.metrics.registry]);
    serveWorkerQueries(app.adminState);
  }

  // Hot reload: the file (a mounted ConfigMap swaps it under a symlink) and SIGHUP. One at a time.
  let reloading = Promise.resolve();
  const reloadFrom = (force: boolean) => {
    reloading = reloading.then(async () => {
      try {
        // The catalog and the files it names, read afresh: the version covers them all.
        const next = await loadCatalogFile(config.catalogFile);
        await app.reload(next, { force });
      } catch (err: unknown) {
        app.reloadFailed(err instanceof CatalogError ? err.issues.map(formatIssue).join('; ') : String(err));
      }
    });
  };
  const watcher = watchCatalog(config.catalogFile, () => reloadFrom(false), {
    onError: (err) => logger.warn({ err }, 'catalog watch'),
    references: () => app.catalog().references.map((ref) => ref.file),
  });
  // An edit made between the first load and the watch being armed would go unseen until the next
  // one: read once more now (a no-op when nothing changed).
  reloadFrom(false);
  onHangup = () => {
    logger.info('SIGHUP: reloading the policy catalog');
    reloadFrom(true);
  };
  const signal = await signalled;
  logger.info({ signal }, 'shutting down');
  watcher.close();
  await reloading;
  await app.stop();
  await revocations?.close();
  redis?.disconnect();
  logger.flush();
  // Nothing should keep the loop alive now; if something does, do not hang the pod's termination.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

async function check(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    options: {
      request: { type: 'string', short: 'X' },
      header: { type: 'string', short: 'H', multiple: true },
      data: { type: 'string', short: 'd' },
      principal: { type: 'string' },
      cert: { type: 'string' },
      route: { type: 'string' },
      source: { type: 'string', default: '127.0.0.1' },
      server: { type: 'string', default: '127.0.0.1:9001' },
      'timeout-ms': { type: 'string', default: '1000' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(CHECK_HELP);
    return 0;
  }
  const target = positionals[0];
  if (!target) throw new UsageError('check needs a URL or a path');
  const request = buildCheckRequest({
    target,
    method: values.request,
    headers: values.header ?? [],
    data: values.data,
    principal: values.principal,
    cert: values.cert,
    route: values.route,
    source: values.source,
    server: values.server,
    timeoutMs: Number(values['timeout-ms']),
  });
  const response = await sendCheck(values.server, request, Number(values['timeout-ms']));
  process.stdout.write(`${values.json ? JSON.stringify(response, null, 2) : renderResponse(response)}\n`);
  return response.status?.code === 0 ? 0 : 1;
}

async function key(args: readonly string[]): Promise<number> {
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

async function token(args: readonly string[]): Promise<number> {
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

async function revoke(command: 'revoke' | 'unrevoke', args: readonly string[]): Promise<number> {
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

async function quota(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      partner: { type: 'string' },
      admin: { type: 'string', default: 'http://127.0.0.1:9090' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (sub !== 'status' || values.help || !values.partner) {
    process.stderr.write(QUOTA_HELP);
    return values.help ? 0 : 2;
  }
  const url = `${values.admin.replace(/\/$/, '')}/v1/partners/${encodeURIComponent(values.partner)}/quota`;
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as QuotaStatus & { detail?: string };
  if (res.status === 404) {
    process.stderr.write(`portcullis: ${body.detail ?? 'not found'}\n`);
    return 1;
  }
  if (!res.ok) throw new Error(body.detail ?? `admin server answered ${res.status}`);
  process.stdout.write(values.json ? `${JSON.stringify(body, null, 2)}\n` : renderQuota(body));
  return 0;
}

function renderQuota(status: QuotaStatus): string {
  const rows = status.limits.map((l) => [
    l.name + (l.shadow ? ' (shadow)' : ''),
    l.algorithm,
    `${l.limit}/${l.period}${l.burst !== null ? ` burst ${l.burst}` : ''}`,
    String(l.used),
    String(l.remaining),
    humanDuration(l.reset_seconds),
    l.routes.length > 0 ? l.routes.join(',') : '*',
  ]);
  const head = ['LIMIT', 'ALGORITHM', 'QUOTA', 'USED', 'LEFT', 'RESET', 'ROUTES'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return `partner ${status.partner} (time zone ${status.time_zone})\n${[head, ...rows].map(line).join('\n')}\n`;
}

async function policy(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'test') return policyTest(rest);
  if (sub === 'diff') return policyDiff(rest);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { 'api-key-pepper-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [file, ...extra] = positionals;
  if (sub !== 'validate' || values.help || !file || extra.length > 0) {
    process.stderr.write(POLICY_HELP);
    return values.help ? 0 : 2;
  }
  try {
    const catalog = await loadCatalogFile(file);
    for (const warning of catalog.warnings) process.stdout.write(`warning: ${formatIssue(warning)}\n`);
    process.stdout.write(
      `ok: ${file}: version ${catalog.version}${catalog.versionName ? ` (${catalog.versionName})` : ''}, ` +
        `${catalog.routes.length} routes, ${catalog.partners.size} partners\n`,
    );
    // Valid, but would serve refuse it? The pepper is read exactly as serve reads it.
    if (catalog.apiKeysByHash.size > 0) {
      const apiKeyPepperFile = values['api-key-pepper-file'] ?? process.env[SERVE_ENV.apiKeyPepperFile] ?? '';
      try {
        if (!(await loadPepper({ apiKeyPepperFile }, process.env))) {
          process.stderr.write(
            `warning: ${missingPepper(file, catalog.apiKeysByHash.size)} (serve refuses to start without it)\n`,
          );
        }
      } catch (err: unknown) {
        if (!(err instanceof PepperError)) throw err;
        process.stderr.write(`warning: ${err.message} (serve refuses to start without it)\n`);
      }
    }
    return 0;
  } catch (err: unknown) {
    if (!(err instanceof CatalogError)) throw err;
    for (const issue of err.issues) process.stdout.write(`${formatIssue(issue)}\n`);
    process.stdout.write(`${err.issues.length} problem${err.issues.length === 1 ? '' : 's'} in ${file}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
