// Building the runtime from a catalog: the stores, the stages and the pipeline that decide, and
// no listener. `serve` (app.ts) builds one per catalog and swaps it on reload; `policy test` and
// `policy diff` (policy-tools/harness.ts) build their pipeline here too, over in-memory stores.
import type { Logger } from 'pino';
import { AdmissionGate, ExpiryTimer } from './admission/gate.js';
import { GradientLimit, type LimitOptions } from './admission/limit.js';
import { type Clock, systemClock } from './clock.js';
import { splitHostPort } from './config.js';
import { type ClamdAddress, ClamdScanner, type MalwareScanner } from './content/scanner.js';
import { ApiKeyVerifier } from './identity/apikeys.js';
import { CertificateReader } from './identity/certificates.js';
import { missingPepper, PepperError } from './identity/pepper.js';
import { type Revocations, StaticRevocations } from './identity/revocation.js';
import { createTokens, type Tokens } from './identity/tokens.js';
import { EventLoopMonitor } from './observability/event-loop.js';
import type { Metrics } from './observability/metrics.js';
import { createAuthorizeStage } from './pipeline/authorize.js';
import { Pipeline } from './pipeline/check.js';
import { createScanStage, inspectStage, NO_SCANNER } from './pipeline/content.js';
import { createIdentifyStage, type IdentityDeps } from './pipeline/identify.js';
import { createQuotaStage, type QuotaDeps } from './pipeline/quota.js';
import { routeStage } from './pipeline/route.js';
import type { Stages } from './pipeline/types.js';
import { plainStoreError } from './plain-errors.js';
import type { AdmissionSettings, Catalog } from './policy/catalog.js';
import { type BreakerOptions, StoreBreaker } from './quota/breaker.js';
import { windowAt } from './quota/calendar.js';
import { ChargedIds } from './quota/charged-ids.js';
import { MemoryQuotaStore } from './quota/memory-store.js';
import { OverLimitCache } from './quota/over-limit.js';
import type { QuotaStore } from './quota/types.js';

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

export interface PipelineParts {
  readonly identity: IdentityDeps;
  readonly quota: QuotaDeps;
  readonly scanner?: MalwareScanner;
  readonly clock: Clock;
  /** Replace or wrap stages (tests inject failures here). */
  readonly stages?: ((defaults: Stages) => Stages) | undefined;
  /** Admission control (serve); absent = every Check is admitted (policy tools, tests). */
  readonly admission?: { readonly gate: AdmissionGate; readonly maxQueueWaitMs: number } | undefined;
}

/** The pipeline over these parts: what `serve`, `policy test` and `policy diff` all run. */
export function createPipeline(parts: PipelineParts): Pipeline {
  return buildPipeline(parts).pipeline;
}

/** The pipeline, and its real stages (unwrapped: the warm-up runs on them, never on a test's). */
function buildPipeline(parts: PipelineParts): { pipeline: Pipeline; stages: Stages } {
  const stages = createStages(parts.identity, parts.quota, parts.scanner);
  const pipeline = new Pipeline(parts.stages ? parts.stages(stages) : stages, parts.clock, parts.admission);
  return { pipeline, stages };
}

/** What `serve` builds its runtimes from (the part of AppOptions that is not about listening). */
export interface RuntimeOptions {
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
  /** Replace or wrap stages (tests inject failures here). */
  readonly stages?: (defaults: Stages) => Stages;
  readonly clock?: Clock;
}

/** One catalog with everything derived from it: swapped as a whole on reload. */
export interface Runtime {
  readonly catalog: Catalog;
  readonly pipeline: Pipeline;
  readonly tokens: Tokens;
  /** The stages, for the warm-up's synthetic Checks. */
  readonly stages: Stages;
}

/** The parts that outlive a catalog (stores, verifiers, scanner), and how to build a runtime on them. */
export interface RuntimeBuilder {
  readonly clock: Clock;
  /** The in-process quota store: the store without a shared one, else its fail_open fallback. */
  readonly local: MemoryQuotaStore;
  /** The breaker around the shared quota store; null without one. */
  readonly breaker: StoreBreaker | null;
  /** The malware scanner (NO_SCANNER without clamd). */
  readonly scanner: MalwareScanner;
  /** The last quota store failure, in our words (plain-errors.ts); null when none yet. */
  lastStoreError(): string | null;
  /** Stops the admission gate's timer and the event-loop monitor. */
  stop(): void;
  /** The runtime of `catalog`, its key sets fetched first. Throws when the catalog cannot be served. */
  build(catalog: Catalog): Promise<Runtime>;
}

/** The shared parts of `serve`, sized by its first catalog, reporting to `metrics`. */
export function createRuntimeBuilder(
  options: RuntimeOptions,
  first: Catalog,
  metrics: Metrics,
): RuntimeBuilder {
  const { logger } = options;
  const clock = options.clock ?? systemClock;
  const quotas = first.settings.quotas;
  // Admission control: one gate per process, across catalog reloads (docs/configuration.md#admission).
  const limit = new GradientLimit(limitOptions(first.settings.admission));
  const expiry = new ExpiryTimer(clock);
  const gate = new AdmissionGate(limit, clock, first.settings.admission.maxQueue, expiry.wake);
  expiry.attach(gate);
  const eventLoop = new EventLoopMonitor((delay) => limit.eventLoopDelayMs(delay.p99Ms));
  metrics.watchAdmission(
    () => gate.snapshot(),
    () => eventLoop.latest(),
  );
  // Without a shared store, the in-memory one is the store (the embedded default); with one, it is
  // the fail_open fallback, each replica enforcing its share.
  const local = new MemoryQuotaStore({
    idempotencyMs: quotas.idempotencySeconds * 1000,
    divisor: options.quotaStore ? quotas.replicas : 1,
  });
  const shared = options.quotaStore;
  const breaker = shared
    ? new StoreBreaker(shared, options.breaker, {
        now: () => performance.now(),
        ...(shared.connected ? { connected: () => shared.connected?.() ?? true } : {}),
      })
    : null;
  const refunded = (reason: 'refused' | 'late_reply', ok: boolean, error?: unknown) => {
    metrics.quotaRefund(reason, ok);
    if (!ok && logger.isLevelEnabled('warn')) {
      logger.warn({ err: error, reason }, 'quota refund failed: the charge stays');
    }
  };
  shared?.watchLateRefunds?.((ok, error) => refunded('late_reply', ok, error));
  const chargedIds = new ChargedIds(quotas.idempotencySeconds * 1000);
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
  let lastStoreError: string | null = null;
  const quotaEvents = {
    charged: metrics.quotaCharged.bind(metrics),
    storeFailed: (behaviour: 'fail_closed' | 'fail_open', error: unknown) => {
      metrics.quotaStoreFailed(behaviour);
      lastStoreError = plainStoreError(error);
      if (logger.isLevelEnabled('warn')) {
        // Our words first; the library's own text only as the cause (plain-errors.ts).
        const cause = error instanceof Error ? error.message : String(error);
        logger.warn({ behaviour, cause }, `quota store failed: ${lastStoreError}`);
      }
    },
    refunded: (ok: boolean, error?: unknown) => refunded('refused', ok, error),
  };

  const build = async (catalog: Catalog): Promise<Runtime> => {
    if (catalog.apiKeysByHash.size > 0 && !options.apiKeyPepper) {
      throw new PepperError(missingPepper(catalog.file, catalog.apiKeysByHash.size));
    }
    const tokens = createTokens(catalog, { clock, logger });
    await tokens.warm();
    limit.configure(limitOptions(catalog.settings.admission));
    gate.setMaxQueue(catalog.settings.admission.maxQueue);
    const { pipeline, stages } = buildPipeline({
      identity: {
        tokens: tokens.verifier,
        apiKeys,
        certificates,
        revocations: options.revocations ?? new StaticRevocations(),
        clock,
      },
      quota: {
        store: breaker ?? local,
        fallback: breaker ? local : null,
        windowAt,
        overLimit,
        charged: chargedIds,
        clock,
        events: quotaEvents,
      },
      scanner,
      clock,
      stages: options.stages,
      admission: { gate, maxQueueWaitMs: catalog.settings.admission.maxQueueWaitMs },
    });
    return { catalog, pipeline, tokens, stages };
  };

  const stop = () => {
    expiry.stop();
    eventLoop.stop();
  };
  return { clock, local, breaker, scanner, lastStoreError: () => lastStoreError, build, stop };
}

function limitOptions(a: AdmissionSettings): LimitOptions {
  return {
    min: a.minLimit,
    max: a.maxLimit,
    initial: a.initialLimit,
    tolerance: a.latencyTolerance,
    eventLoopDelayMs: a.eventLoopDelayMs,
  };
}

function clamdAddressOf(address: string): ClamdAddress {
  if (address.startsWith('/')) return { path: address };
  const { host, port } = splitHostPort(address);
  return { host, port };
}
