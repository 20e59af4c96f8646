// Wiring: build the parts, start the gRPC and admin servers, stop them in order.
import type { Server as HttpServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { splitHostPort } from './config.js';
import { type ClamdAddress, ClamdScanner, type MalwareScanner } from './content/scanner.js';
import { authorizationService, checkHandler } from './envoy/server.js';
import { ApiKeyVerifier } from './identity/apikeys.js';
import { CertificateReader } from './identity/certificates.js';
import { missingPepper, PepperError } from './identity/pepper.js';
import { type Revocations, StaticRevocations } from './identity/revocation.js';
import { createTokens, type Tokens } from './identity/tokens.js';
import { type AdminState, createAdminServer, registrySource } from './observability/admin.js';
import { Metrics } from './observability/metrics.js';
import type { Tracing } from './observability/tracing.js';
import { createAuthorizeStage } from './pipeline/authorize.js';
import { Pipeline } from './pipeline/check.js';
import { createScanStage, inspectStage, NO_SCANNER } from './pipeline/content.js';
import { createIdentifyStage, type IdentityDeps } from './pipeline/identify.js';
import { createQuotaStage, type QuotaDeps } from './pipeline/quota.js';
import { routeStage } from './pipeline/route.js';
import { type Clock, type Stages, systemClock } from './pipeline/types.js';
import type { Catalog } from './policy/catalog.js';
import { type BreakerOptions, StoreBreaker } from './quota/breaker.js';
import { windowAt } from './quota/calendar.js';
import { MemoryQuotaStore } from './quota/memory-store.js';
import { OverLimitCache } from './quota/over-limit.js';
import { quotaStatus } from './quota/status.js';
import type { QuotaStore } from './quota/types.js';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';

/** The stages in pipeline order, over their dependencies. */
export function createStages(
  identity: IdentityDeps,
  quota: QuotaDeps,
  scanner: MalwareScanner = NO_SCANNER,
): Stages {
  return {
    route: routeStage,
    identify: createIdentifyStage(identity),
    authorize: createAuthorizeStage(identity.clock),
    inspect: inspectStage,
    quota: createQuotaStage(quota),
    scan: createScanStage(scanner),
  };
}

export interface AppOptions {
  readonly catalog: Catalog;
  readonly grpcAddress: string;
  readonly adminAddress: string;
  readonly maxMessageBytes: number;
  readonly drainDelayMs: number;
  readonly shutdownGraceMs: number;
  readonly logger: Logger;
  /** HMAC pepper of API keys; null = none (a catalog with keys is refused). */
  readonly apiKeyPepper: Buffer | null;
  /** Live revocations (Redis); the catalog's static list always applies too. */
  readonly revocations?: Revocations;
  /** The shared quota store (Redis). Without it, quotas are counted in this process only. */
  readonly quotaStore?: QuotaStore;
  /** Circuit breaker around the shared quota store. */
  readonly breaker?: BreakerOptions;
  /** clamd (host:port or socket path) and its StreamMaxLength; absent = no scanner: routes that scan follow their scan.on_error. */
  readonly clamd?: { readonly address: string; readonly maxBytes: number };
  /** OTLP/HTTP traces endpoint ('' or absent = tracing off). */
  readonly otlpEndpoint?: string;
  /** Replace or wrap stages (tests inject failures here). */
  readonly stages?: (defaults: Stages) => Stages;
  readonly clock?: Clock;
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

/** One catalog with everything derived from it: swapped as a whole on reload. */
interface Runtime {
  readonly catalog: Catalog;
  readonly pipeline: Pipeline;
  readonly tokens: Tokens;
}

/** After a reload, the old runtime's key sets are closed once no Check can still be using them. */
const RETIRE_AFTER_MS = 30_000;

export async function startApp(options: AppOptions): Promise<App> {
  const { logger } = options;
  const metrics = new Metrics();
  let draining = false;
  const clock = options.clock ?? systemClock;

  const first = options.catalog;
  const quotas = first.settings.quotas;
  // Without a shared store, the in-memory one is the store (the embedded default); with one, it is
  // the fail_open fallback, each replica enforcing its share.
  const local = new MemoryQuotaStore({
    idempotencyMs: quotas.idempotencySeconds * 1000,
    divisor: options.quotaStore ? quotas.replicas : 1,
  });
  const breaker = options.quotaStore ? new StoreBreaker(options.quotaStore, options.breaker) : null;
  metrics.watchQuotaStore(() => breaker?.state() ?? 'local');
  const apiKeys = new ApiKeyVerifier(options.apiKeyPepper);
  const scanner: MalwareScanner = options.clamd?.address
    ? new ClamdScanner({
        address: clamdAddressOf(options.clamd.address),
        maxBytes: options.clamd.maxBytes,
        clock,
        events: { scanned: metrics.scanned.bind(metrics) },
      })
    : NO_SCANNER;
  const certificates = new CertificateReader();
  const overLimit = new OverLimitCache();
  const quotaEvents = {
    charged: metrics.quotaCharged.bind(metrics),
    storeFailed: (behaviour: 'fail_closed' | 'fail_open', error: unknown) => {
      metrics.quotaStoreFailed(behaviour);
      if (logger.isLevelEnabled('warn')) logger.warn({ err: error, behaviour }, 'quota store failed');
    },
  };

  const build = async (catalog: Catalog): Promise<Runtime> => {
    if (catalog.apiKeysByHash.size > 0 && !options.apiKeyPepper) {
      throw new PepperError(missingPepper(catalog.file, catalog.apiKeysByHash.size));
    }
    const tokens = createTokens(catalog, { clock, logger });
    await tokens.warm();
    const stages = createStages(
      {
        tokens: tokens.verifier,
        apiKeys,
        certificates,
        revocations: options.revocations ?? new StaticRevocations(),
        clock,
      },
      {
        store: breaker ?? local,
        fallback: breaker ? local : null,
        windowAt,
        overLimit,
        clock,
        events: quotaEvents,
      },
      scanner,
    );
    const pipeline = new Pipeline(options.stages ? options.stages(stages) : stages, clock);
    return { catalog, pipeline, tokens };
  };

  let runtime = await build(first);
  // Loaded only when configured: the OpenTelemetry SDK costs start-up time and memory otherwise.
  const tracing: Tracing | null = options.otlpEndpoint
    ? new (await import('./observability/tracing.js')).Tracing(options.otlpEndpoint)
    : null;
  let lastReload: { result: 'success' | 'failure'; at: string; reason?: string; recovered?: boolean } | null =
    null;
  metrics.policyLoaded(first);
  metrics.watchKeySets(() => runtime.tokens.keySets);

  const health = new HealthImplementation({ '': 'NOT_SERVING', [AUTHORIZATION_SERVICE]: 'NOT_SERVING' });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  server.addService(authorizationService, {
    Check: checkHandler({ runtime: () => runtime, logger, metrics, tracing }),
  });
  health.addToServer(server);

  const grpcPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.grpcAddress, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    );
  });
  const adminState: AdminState = {
    ready: () => !draining,
    policy: () => ({
      version: runtime.catalog.version,
      name: runtime.catalog.versionName,
      ...(lastReload ? { last_reload: lastReload } : {}),
    }),
    quotaStatus: (partnerId) =>
      quotaStatus(runtime.catalog, partnerId, options.quotaStore ?? local, clock.now(), windowAt),
  };
  // No admin address: a worker of `serve --workers`, whose primary serves the admin endpoints.
  const admin = options.adminAddress ? createAdminServer(registrySource(metrics), adminState) : null;
  const adminPort = admin ? await listen(admin, options.adminAddress) : 0;

  // The catalog is loaded (it was validated before we got here): ready to serve.
  health.setStatus('', 'SERVING');
  health.setStatus(AUTHORIZATION_SERVICE, 'SERVING');
  logger.info(
    {
      grpc: options.grpcAddress,
      grpc_port: grpcPort,
      admin_port: adminPort,
      policy_version: first.version,
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
    runtime = await build(next);
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
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(AUTHORIZATION_SERVICE, 'NOT_SERVING');
      logger.info({ drain_delay_ms: options.drainDelayMs, grace_ms: options.shutdownGraceMs }, 'draining');
      if (options.drainDelayMs > 0) await sleep(options.drainDelayMs);
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          logger.warn('grace period over: closing remaining calls');
          server.forceShutdown();
          resolve();
        }, options.shutdownGraceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      if (admin) {
        await new Promise<void>((resolve) => admin.close(() => resolve()));
        admin.closeAllConnections();
      }
      for (const timer of retiring) clearTimeout(timer);
      await runtime.tokens.close();
      breaker?.shutdown();
      await tracing?.shutdown();
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

function clamdAddressOf(address: string): ClamdAddress {
  if (address.startsWith('/')) return { path: address };
  const { host, port } = splitHostPort(address);
  return { host, port };
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
