// Wiring: build the parts, start the gRPC and admin servers, stop them in order.
import type { Server as HttpServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { splitHostPort } from './config.js';
import { authorizationService, checkHandler } from './envoy/server.js';
import { ApiKeyVerifier } from './identity/apikeys.js';
import { CertificateReader } from './identity/certificates.js';
import { type Revocations, StaticRevocations } from './identity/revocation.js';
import { createTokens } from './identity/tokens.js';
import { createAdminServer } from './observability/admin.js';
import { Metrics } from './observability/metrics.js';
import { createAuthorizeStage } from './pipeline/authorize.js';
import { Pipeline } from './pipeline/check.js';
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
export function createStages(identity: IdentityDeps, quota: QuotaDeps): Stages {
  return {
    route: routeStage,
    identify: createIdentifyStage(identity),
    authorize: createAuthorizeStage(identity.clock),
    quota: createQuotaStage(quota),
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
  /** Replace or wrap stages (tests inject failures here). */
  readonly stages?: (defaults: Stages) => Stages;
  readonly clock?: Clock;
}

export interface App {
  readonly grpcPort: number;
  readonly adminPort: number;
  readonly metrics: Metrics;
  /** Health NOT_SERVING, drain delay, stop accepting, let in-flight calls finish (bounded). */
  stop(): Promise<void>;
}

export async function startApp(options: AppOptions): Promise<App> {
  const { logger } = options;
  const metrics = new Metrics();
  const catalog = options.catalog;
  let draining = false;
  metrics.policyLoaded(catalog);
  const clock = options.clock ?? systemClock;
  if (catalog.apiKeysByHash.size > 0 && !options.apiKeyPepper) {
    throw new Error(
      'the catalog has API keys but no pepper is configured (PORTCULLIS_API_KEY_PEPPER[_FILE])',
    );
  }

  const tokens = createTokens(catalog, { clock, logger });
  await tokens.warm();
  metrics.watchKeySets(tokens.keySets);
  const quotas = catalog.settings.quotas;
  const idempotencyMs = quotas.idempotencySeconds * 1000;
  // Without a shared store, the in-memory one is the store (the embedded default); with one, it is
  // the fail_open fallback, each replica enforcing its share.
  const local = new MemoryQuotaStore({ idempotencyMs, divisor: options.quotaStore ? quotas.replicas : 1 });
  const breaker = options.quotaStore ? new StoreBreaker(options.quotaStore, options.breaker) : null;
  metrics.watchQuotaStore(() => breaker?.state() ?? 'local');
  const stages = createStages(
    {
      tokens: tokens.verifier,
      apiKeys: new ApiKeyVerifier(options.apiKeyPepper),
      certificates: new CertificateReader(),
      revocations: options.revocations ?? new StaticRevocations(),
      clock,
    },
    {
      store: breaker ?? local,
      fallback: breaker ? local : null,
      windowAt,
      overLimit: new OverLimitCache(),
      clock,
      events: {
        charged: (partner, specs, result) => metrics.quotaCharged(partner, specs, result),
        storeFailed: (behaviour, error) => {
          metrics.quotaStoreFailed(behaviour);
          if (logger.isLevelEnabled('warn')) logger.warn({ err: error, behaviour }, 'quota store failed');
        },
      },
    },
  );
  const pipeline = new Pipeline(options.stages ? options.stages(stages) : stages, clock);
  const health = new HealthImplementation({ '': 'NOT_SERVING', [AUTHORIZATION_SERVICE]: 'NOT_SERVING' });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  server.addService(authorizationService, {
    Check: checkHandler({ catalogs: { current: () => catalog }, pipeline, logger, metrics }),
  });
  health.addToServer(server);

  const grpcPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.grpcAddress, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    );
  });
  const admin = createAdminServer(metrics, {
    ready: () => !draining,
    policy: () => ({ version: catalog.version, name: catalog.versionName }),
    quotaStatus: (partnerId) =>
      quotaStatus(catalog, partnerId, options.quotaStore ?? local, clock.now(), windowAt),
  });
  const adminPort = await listen(admin, options.adminAddress);

  // The catalog is loaded (it was validated before we got here): ready to serve.
  health.setStatus('', 'SERVING');
  health.setStatus(AUTHORIZATION_SERVICE, 'SERVING');
  logger.info(
    {
      grpc: options.grpcAddress,
      grpc_port: grpcPort,
      admin_port: adminPort,
      policy_version: catalog.version,
    },
    'serving',
  );

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
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      await tokens.close();
      breaker?.shutdown();
      logger.info('stopped');
    })();
    return stopping;
  };

  return {
    grpcPort,
    adminPort,
    metrics,
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
