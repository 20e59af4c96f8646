#!/usr/bin/env node
// The `portcullis` command: serve, check, policy validate.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { AggregatorRegistry } from 'prom-client';
import { startApp } from '../app.js';
import {
  otlpEndpoint,
  PEPPER_ENV,
  resolveServeConfig,
  SERVE_DEFAULTS,
  SERVE_ENV,
  type ServeConfig,
} from '../config.js';
import { catalogEntry, generateApiKey } from '../identity/apikeys.js';
import { loadPepper } from '../identity/pepper.js';
import { RedisRevocations } from '../identity/revocation.js';
import { createLogger } from '../observability/audit.js';
import { CatalogError, formatIssue, loadCatalogFile } from '../policy/load.js';
import { watchCatalog } from '../policy/watch.js';
import {
  createRedisClient,
  parseRedisUrl,
  type RedisClient,
  RedisQuotaStore,
  waitForReady,
} from '../quota/redis-store.js';
import type { QuotaStatus } from '../quota/status.js';
import { buildCheckRequest, renderResponse, sendCheck, UsageError } from './check.js';
import { changeRevocation, EXAMPLE_SIGNING_KEYS, mintToken, parseKind } from './identity.js';
import { POLICY_DIFF_HELP, POLICY_TEST_HELP, policyDiff, policyTest } from './policy.js';
import { runPrimary, serveWorkerQueries } from './workers.js';

const HELP = `portcullis — Envoy ext_authz sidecar for partner APIs

Usage:
  portcullis serve [--config FILE] [--grpc-address HOST:PORT] [--admin-address HOST:PORT]
                   [--log-level LEVEL] [--max-message-bytes N] [--drain-delay-ms N] [--shutdown-grace-ms N]
                   [--api-key-pepper-file FILE] [--redis-url URL] [--clamd ADDRESS] [--workers N]
  portcullis check URL|PATH [-X METHOD] [-H 'name: value']... [--data TEXT|@FILE]
                   [--principal ID] [--cert FILE] [--route NAME] [--source IP] [--server HOST:PORT] [--json]
  portcullis policy validate FILE
  portcullis policy test DIR [--catalog FILE] [--json]
  portcullis policy diff OLD NEW [--tests DIR] [--audit FILE] [--json]
  portcullis key create --partner ID [--id KEY_ID] [--expires ISO8601] [--pepper-file FILE]
  portcullis token mint --client-id ID [--sub USER] [--scope 'a b'] [--ttl SECONDS] [--cert FILE] ...
  portcullis revoke|unrevoke jti|application|api_key ID [--ttl SECONDS] [--redis-url URL]
  portcullis quota status --partner ID [--admin URL] [--json]
  portcullis help [COMMAND]

Run 'portcullis help COMMAND' (serve, check, policy, key, token, revoke, quota) for details.
Docs: docs/configuration.md, docs/errors.md, docs/envoy.md.
`;

const SERVE_HELP = `portcullis serve: answer Envoy's Check calls for the policy catalog FILE.

Flags (environment variable in brackets, then the default):
  --config FILE             policy catalog [${SERVE_ENV.catalogFile}] (examples/catalog.yaml)
  --grpc-address HOST:PORT  Check and grpc.health.v1 [${SERVE_ENV.grpcAddress}] (${SERVE_DEFAULTS.grpcAddress})
  --admin-address HOST:PORT /metrics /healthz /readyz [${SERVE_ENV.adminAddress}] (${SERVE_DEFAULTS.adminAddress})
  --log-level LEVEL         fatal|error|warn|info|debug|trace|silent [${SERVE_ENV.logLevel}] (${SERVE_DEFAULTS.logLevel})
  --max-message-bytes N     largest CheckRequest accepted; keep it above Envoy's
                            with_request_body.max_request_bytes plus headers [${SERVE_ENV.maxMessageBytes}] (${SERVE_DEFAULTS.maxMessageBytes})
  --drain-delay-ms N        after SIGTERM, report NOT_SERVING this long before closing [${SERVE_ENV.drainDelayMs}] (${SERVE_DEFAULTS.drainDelayMs})
  --shutdown-grace-ms N     then let in-flight calls finish for at most this long [${SERVE_ENV.shutdownGraceMs}] (${SERVE_DEFAULTS.shutdownGraceMs})
  --api-key-pepper-file F   the secret API keys are hashed with [${SERVE_ENV.apiKeyPepperFile}], or the value
                            itself in ${PEPPER_ENV} (the example pepper with the example catalog)
  --clamd ADDRESS           clamd for malware scans: host:port or /path/to/clamd.ctl [${SERVE_ENV.clamd}]
                            (none: routes that scan follow their content.scan.on_error)
  --clamd-max-bytes N       clamd's StreamMaxLength; larger content is refused as scan_too_large
                            [${SERVE_ENV.clamdMaxBytes}] (${SERVE_DEFAULTS.clamdMaxBytes})
  --workers N               processes sharing the gRPC port; the primary serves the admin endpoints
                            [${SERVE_ENV.workers}] (${SERVE_DEFAULTS.workers})
  --redis-url URL           Redis for quotas and live revocations [${SERVE_ENV.redisUrl}] (none: in-process
                            quotas, catalog revocation lists only)

Tracing (OpenTelemetry, OTLP/HTTP) is on when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: a span per Check, a child per stage, joined to Envoy's
trace through traceparent.

Exits 0 after a clean shutdown (SIGTERM or SIGINT), 1 when the catalog or a setting is invalid.
`;

const CHECK_HELP = `portcullis check: send one Check, shaped as Envoy would, and print the decision.

  URL|PATH                  https://api.example.com/v1/orders?x=1, or /v1/orders with -H 'host: ...'
  -X, --request METHOD      HTTP method (GET, or POST when --data is given)
  -H, --header 'N: V'       request header, repeatable
  -d, --data TEXT|@FILE     request body (raw bytes of FILE with @)
  --principal ID            mTLS principal (SPIFFE id) Envoy would report
  --cert FILE               client certificate (PEM); the principal is taken from it unless given
  --route NAME              the 'route' context extension Envoy would send
  --source IP               client address (127.0.0.1)
  --server HOST:PORT        portcullis to ask (127.0.0.1:9001)
  --timeout-ms N            Check deadline, like Envoy's ext_authz timeout (1000)
  --json                    print the decoded CheckResponse as JSON

Exit codes: 0 allowed, 1 denied, 2 error (bad flags, server unreachable, timeout).
`;

const KEY_HELP = `portcullis key create: make a new API key for a partner.

  --partner ID           the partner the key belongs to (required)
  --id KEY_ID            the key's public name (default: PARTNER-key-YYYYMMDD)
  --expires ISO8601      when it stops working, e.g. 2027-06-30T00:00:00Z
  --pepper-file FILE     the server's pepper [\${SERVE_ENV.apiKeyPepperFile}]; or set \${PEPPER_ENV}

Prints the key ONCE (it is stored nowhere) and the catalog entry to add under the partner's
identities.api_keys: only its HMAC-SHA-256 under the pepper, never the key.
`;

const TOKEN_HELP = `portcullis token mint: sign an access token, by default with the EXAMPLE issuer's keys
(examples/keys: public on purpose, for the demo and tests only).

  --client-id ID         the application (client_id claim; required)
  --sub USER             the end user (sub)
  --scope 'a b'          space-delimited scopes
  --ttl SECONDS          lifetime (600)
  --cert FILE            bind the token to this client certificate (cnf.x5t#S256, RFC 8705)
  --auth-time SECONDS    auth_time as seconds ago (step-up), e.g. 0 for "just now"
  --acr VALUE            authentication context class
  --claim NAME=VALUE     any other string claim, repeatable
  --issuer URL           iss (https://idp.example.com)
  --audience AUD         aud (partner-api)
  --keys FILE            private JWKs to sign with (examples/keys/signing-keys.json)
  --kid KID              which key (the first private key of the file)

Prints the token on stdout.
`;

const REVOKE_HELP = `portcullis revoke KIND ID [--ttl SECONDS]: revoke a credential now, on every replica.
portcullis unrevoke KIND ID: lift it.

  KIND                   jti (one token), application (every token of a client id), api_key (a key id)
  --ttl SECONDS          forget the revocation after this long (e.g. the token's remaining lifetime)
  --redis-url URL        the Redis portcullis watches [\${SERVE_ENV.redisUrl}]

Writes to Redis and publishes the change: every portcullis started with the same --redis-url drops
the credential within a second. Without Redis, list revocations in the catalog (revocations:).
`;

const QUOTA_HELP = `portcullis quota status --partner ID: a partner's limits, used and left, from a running portcullis.

  --partner ID           the partner (required)
  --admin URL            the admin server of a running portcullis (http://127.0.0.1:9090)
  --json                 print the admin endpoint's JSON as is

Reads GET /v1/partners/ID/quota on the admin server (loopback only: partners never reach it).
Nothing is charged. Exit codes: 0 shown, 1 no such partner, 2 error.
`;

const POLICY_HELP = `portcullis policy validate FILE: check a policy catalog.

Prints every problem as FILE:LINE:COLUMN: PATH: MESSAGE and exits 1, or prints a summary and exits 0.

${POLICY_TEST_HELP}
${POLICY_DIFF_HELP}`;

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

function helpFor(topic: string | undefined): string {
  if (topic === 'serve') return SERVE_HELP;
  if (topic === 'check') return CHECK_HELP;
  if (topic === 'policy') return POLICY_HELP;
  if (topic === 'key') return KEY_HELP;
  if (topic === 'token') return TOKEN_HELP;
  if (topic === 'quota') return QUOTA_HELP;
  if (topic === 'revoke' || topic === 'unrevoke') return REVOKE_HELP;
  return HELP;
}

async function serve(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      config: { type: 'string' },
      'grpc-address': { type: 'string' },
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
    const apiKeyPepper = await loadPepper(config, process.env);
    let quotaStore: RedisQuotaStore | undefined;
    if (config.redisUrl) {
      redis = createRedisClient(config.redisUrl);
      redis.on('error', () => {}); // reconnects by itself; failures surface per call, metered
      // Start warm: Checks that arrive before the connection is up would fail and open the breaker.
      // A Redis that is down at start is not fatal: the routes' on_store_error applies until it is up.
      await waitForReady(redis, 5000).catch((err: unknown) =>
        logger.warn({ err: String(err) }, 'quota store not reachable at start: serving with on_store_error'),
      );
      quotaStore = new RedisQuotaStore(redis, {
        idempotencyMs: catalog.settings.quotas.idempotencySeconds * 1000,
      });
      // Live revocations speak to one Redis; a cluster URL keeps them to the catalog's lists.
      if (parseRedisUrl(config.redisUrl).kind === 'standalone') {
        revocations = new RedisRevocations({ url: config.redisUrl, logger });
        await revocations.start();
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
    logger.fatal({ err }, 'cannot start');
    logger.flush();
    process.stderr.write(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    await revocations?.close();
    redis?.disconnect();
    return 1;
  }
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
  const pepper = await loadPepper({ apiKeyPepperFile: pepperFile, catalogFile: '' }, process.env);
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
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(REVOKE_HELP);
    return 0;
  }
  const [kindText, id, ...extra] = positionals;
  if (!id || extra.length > 0) throw new UsageError(`usage: portcullis ${command} KIND ID`);
  const redisUrl = values['redis-url'] ?? process.env[SERVE_ENV.redisUrl];
  if (!redisUrl) throw new UsageError(`no Redis: pass --redis-url or set ${SERVE_ENV.redisUrl}`);
  const ttl = values.ttl === undefined ? undefined : Number(values.ttl);
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl > 0)) {
    throw new UsageError(`--ttl must be a positive number of seconds, got "${values.ttl}"`);
  }
  const kind = parseKind(kindText);
  await changeRevocation(redisUrl, command, kind, id, ttl);
  process.stdout.write(`${command === 'revoke' ? 'revoked' : 'unrevoked'} ${kind} ${id}\n`);
  return 0;
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
    `${l.reset_seconds}s`,
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
  const [sub, file, ...extra] = args;
  if (sub === 'test') return policyTest(args.slice(1));
  if (sub === 'diff') return policyDiff(args.slice(1));
  if (sub !== 'validate' || !file || extra.length > 0) {
    process.stderr.write(POLICY_HELP);
    return 2;
  }
  try {
    const catalog = await loadCatalogFile(file);
    process.stdout.write(
      `ok: ${file}: version ${catalog.version}${catalog.versionName ? ` (${catalog.versionName})` : ''}, ` +
        `${catalog.routes.length} routes, ${catalog.partners.size} partners\n`,
    );
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
