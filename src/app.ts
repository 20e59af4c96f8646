// Wiring: start the Check and admin listeners over a runtime built from the catalog
// (runtime.ts), swap the runtime on reload, stop in order. Signals are cli/main.ts's.
import type { Server as HttpServer } from 'node:http';
import { splitHostPort } from './config.js';
import { ClamdScanner } from './content/scanner.js';
import { type Listener, startListener, type TransportName } from './envoy/listener.js';
import { createCheckHandler } from './envoy/server.js';
import { warmUp } from './envoy/warmup.js';
import { type AdminState, createAdminServer, registrySource } from './observability/admin.js';
import { flushAudit } from './observability/audit.js';
import { type DependencyReport, dependencyReport } from './observability/dependencies.js';
import { Metrics } from './observability/metrics.js';
import type { Tracing } from './observability/tracing.js';
import type { Catalog } from './policy/catalog.js';
import { windowAt } from './quota/calendar.js';
import { quotaStatus } from './quota/status.js';
import { createRuntimeBuilder, type RuntimeOptions } from './runtime.js';

export { AUTHORIZATION_SERVICE } from './envoy/listener.js';

export interface AppOptions extends RuntimeOptions {
  readonly catalog: Catalog;
  readonly grpcAddress: string;
  /** The gRPC transport: node:http2 (default) or grpc-js. */
  readonly transport?: TransportName;
  readonly adminAddress: string;
  readonly maxMessageBytes: number;
  readonly drainDelayMs: number;
  readonly shutdownGraceMs: number;
  /** OTLP/HTTP traces endpoint ('' or absent = tracing off). */
  readonly otlpEndpoint?: string;
}

export interface App {
  readonly grpcPort: number;
  /** 0 when there is no admin server (a worker). */
  readonly adminPort: number;
  readonly metrics: Metrics;
  /** What the admin endpoints report (a worker answers its primary with it). */
  readonly adminState: AdminState;
  /** The catalog being served. */
  catalog(): Catalog;
  /**
   * Serve `next` from the next Check on: its key sets are fetched first, then one reference swap.
   * A Check in flight finishes on the catalog it started with; none ever sees two.
   */
  reload(next: Catalog, options?: { force?: boolean }): Promise<void>;
  /** Record a refused reload: the last good catalog keeps serving; logs, metrics and /readyz say so. */
  reloadFailed(reason: string): void;
  /** Health NOT_SERVING, drain delay, stop accepting, let in-flight calls finish (bounded). */
  stop(): Promise<void>;
}

/** After a reload, the old runtime's key sets are closed once no Check can still be using them. */
const RETIRE_AFTER_MS = 30_000;

export async function startApp(options: AppOptions): Promise<App> {
  const { logger } = options;
  const metrics = new Metrics();
  let draining = false;
  let warm = false;

  const first = options.catalog;
  const builder = createRuntimeBuilder(options, first, metrics);
  const { clock, local, breaker, scanner } = builder;

  let runtime = await builder.build(first);
  // Loaded only when configured: the OpenTelemetry SDK costs start-up time and memory otherwise.
  const tracing: Tracing | null = options.otlpEndpoint
    ? new (await import('./observability/tracing.js')).Tracing(options.otlpEndpoint)
    : null;
  let lastReload: { result: 'success' | 'failure'; at: string; reason?: string; recovered?: boolean } | null =
    null;
  metrics.policyLoaded(first);
  metrics.watchKeySets(() => runtime.tokens.keySets);

  const checks: Listener = await startListener(options.transport ?? 'http2', {
    address: options.grpcAddress,
    maxMessageBytes: options.maxMessageBytes,
    check: createCheckHandler({ runtime: () => runtime, logger, metrics, tracing }),
  });
  const grpcPort = checks.port;
  const adminState: AdminState = {
    ready: () => warm && !draining,
    policy: () => ({
      version: runtime.catalog.version,
      name: runtime.catalog.versionName,
      ...(lastReload ? { last_reload: lastReload } : {}),
    }),
    quotaStatus: (partnerId) =>
      quotaStatus(runtime.catalog, partnerId, options.quotaStore ?? local, clock.now(), windowAt),
    dependencies: () =>
      dependencyReport({
        quotaStore: () =>
          breaker ? { circuit: breaker.state(), lastError: builder.lastStoreError() } : null,
        clamd:
          scanner instanceof ClamdScanner && options.clamd?.address
            ? { ping: (ms) => scanner.ping(ms), address: options.clamd.address }
            : null,
        keySets: () => runtime.tokens.keySets,
      }),
  };
  metrics.watchDependencies(() => (adminState.dependencies as () => Promise<DependencyReport>)());
  // No admin address: a worker of `serve --workers`, whose primary serves the admin endpoints.
  const admin = options.adminAddress ? createAdminServer(registrySource(metrics), adminState) : null;
  const adminPort = admin ? await listen(admin, options.adminAddress) : 0;

  // The catalog is loaded (it was validated before we got here) and its key sets fetched; warm the
  // hot path with synthetic Checks (no charge, no scan, not logged), then report SERVING.
  const warmed = await warmUp(runtime.stages, runtime.catalog, clock);
  warm = true;
  checks.setServing(true);
  logger.info(
    {
      grpc: options.grpcAddress,
      transport: options.transport ?? 'http2',
      grpc_port: grpcPort,
      admin_port: adminPort,
      policy_version: first.version,
      warm_up_checks: warmed,
    },
    'serving',
  );

  const retiring = new Set<NodeJS.Timeout>();
  const reload = async (next: Catalog, reloadOptions: { force?: boolean } = {}) => {
    // Same bytes, same catalog, unless forced (SIGHUP: re-read whatever it names anyway).
    if (next.version === runtime.catalog.version && !reloadOptions.force) {
      // The files are back to the catalog being served (a refused edit was reverted): that is a
      // recovery, recorded as a good reload, or /readyz and the metrics would go on saying "failure".
      if (lastReload?.result === 'failure') recovered(lastReload.reason ?? '');
      return;
    }
    const previous = runtime;
    runtime = await builder.build(next);
    lastReload = { result: 'success', at: new Date(clock.now()).toISOString() };
    metrics.policyLoaded(next);
    metrics.policyReloaded('success');
    metrics.policyReloadFailing(false);
    logger.info(
      { policy_version: next.version, previous_version: previous.catalog.version },
      'policy reloaded',
    );
    const timer = setTimeout(() => {
      retiring.delete(timer);
      void previous.tokens.close();
    }, RETIRE_AFTER_MS);
    timer.unref();
    retiring.add(timer);
  };
  const recovered = (failure: string) => {
    lastReload = { result: 'success', at: new Date(clock.now()).toISOString(), recovered: true };
    metrics.policyReloaded('success');
    metrics.policyReloadFailing(false);
    logger.info(
      { policy_version: runtime.catalog.version, previous_failure: failure },
      'policy reload recovered: the files are back to the catalog being served',
    );
  };
  const reloadFailed = (reason: string) => {
    lastReload = { result: 'failure', at: new Date(clock.now()).toISOString(), reason };
    metrics.policyReloaded('failure');
    metrics.policyReloadFailing(true);
    logger.error(
      { reason, policy_version: runtime.catalog.version },
      'policy reload refused: keeping the last good catalog',
    );
  };

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      draining = true;
      checks.setServing(false);
      logger.info({ drain_delay_ms: options.drainDelayMs, grace_ms: options.shutdownGraceMs }, 'draining');
      if (options.drainDelayMs > 0) await sleep(options.drainDelayMs);
      await checks.shutdown(options.shutdownGraceMs, () =>
        logger.warn('grace period over: closing remaining calls'),
      );
      if (admin) {
        await new Promise<void>((resolve) => admin.close(() => resolve()));
        admin.closeAllConnections();
      }
      for (const timer of retiring) clearTimeout(timer);
      builder.stop();
      await runtime.tokens.close();
      builder.breaker?.shutdown();
      await tracing?.shutdown();
      // The last decisions' lines may wait for the end of their event-loop turn: written first.
      flushAudit(logger);
      logger.info('stopped');
    })();
    return stopping;
  };

  return {
    grpcPort,
    adminPort,
    metrics,
    adminState,
    catalog: () => runtime.catalog,
    reload,
    reloadFailed,
    stop,
  };
}

function listen(server: HttpServer, address: string): Promise<number> {
  const { host, port } = splitHostPort(address);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const bound = server.address();
      resolve(typeof bound === 'object' && bound ? bound.port : port);
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
