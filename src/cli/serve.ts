// `portcullis serve`: configuration, Redis and revocations at start, the app, hot reload, signals.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { AggregatorRegistry } from 'prom-client';
import { startApp } from '../app.js';
import { otlpEndpoint, resolveServeConfig, SERVE_ENV, type ServeConfig } from '../config.js';
import { loadPepper, missingPepper, PepperError } from '../identity/pepper.js';
import { RedisRevocations } from '../identity/revocation.js';
import { createLogger } from '../observability/audit.js';
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
import { SERVE_HELP } from './help.js';
import { runPrimary, serveWorkerQueries, workersNeedSharedStore } from './workers.js';

/** How long `serve` waits for Redis before serving without it (it keeps trying in the background). */
const START_WAIT_MS = 5000;

export async function serveCommand(args: readonly string[]): Promise<number> {
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
