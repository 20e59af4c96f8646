// What /readyz and portcullis_dependency_state say about the services we depend on, in plain words:
// the quota store (Redis behind its circuit breaker), clamd, and each issuer's JWKS. Readiness itself
// stays "can this process serve" (a dependency down is handled per route, by on_error and
// on_store_error); this is the detail an operator reads to know which one is in trouble.
import type { JwksStats } from '../identity/jwks.js';

export type DependencyState = 'ok' | 'degraded' | 'unavailable' | 'local' | 'not_configured' | 'unknown';

export interface DependencyStatus {
  readonly state: DependencyState;
  readonly detail: string;
}

export interface DependencyReport {
  readonly quota_store: DependencyStatus;
  readonly clamd: DependencyStatus;
  /** By issuer name. */
  readonly jwks: Readonly<Record<string, DependencyStatus>>;
}

export interface DependencySources {
  /** null: no Redis configured (quotas counted in this process). */
  quotaStore(): { readonly circuit: string; readonly lastError: string | null } | null;
  /** null: no clamd configured. */
  readonly clamd: { ping(timeoutMs: number): Promise<boolean>; readonly address: string } | null;
  keySets(): ReadonlyMap<string, { stats(): JwksStats }>;
}

/** The quota store's state from its circuit (closed, open, half_open) and its last failure, in our words. */
export function quotaStoreStatus(
  store: { readonly circuit: string; readonly lastError: string | null } | null,
): DependencyStatus {
  if (!store)
    return { state: 'local', detail: 'no Redis configured: quotas are counted in this process only' };
  const last = store.lastError ? `; last failure: ${store.lastError}` : '';
  switch (store.circuit) {
    case 'closed':
      return { state: 'ok', detail: `Redis answers; quotas are shared by every replica${last}` };
    case 'half_open':
      return { state: 'degraded', detail: `Redis failed recently; trying it again${last}` };
    case 'open':
      return {
        state: 'unavailable',
        detail: `Redis is failing: routes answer by their quota.on_store_error${last}`,
      };
    default:
      return { state: 'unknown', detail: `quota store circuit "${store.circuit}"${last}` };
  }
}

/** One issuer's key set, from its cache statistics. */
export function jwksStatus(stats: JwksStats): DependencyStatus {
  if (stats.keys === 0) {
    return {
      state: 'unavailable',
      detail: stats.lastError ? `no usable keys: ${stats.lastError}` : 'no usable keys yet',
    };
  }
  if (stats.lastError) {
    return {
      state: 'degraded',
      detail: `verifying with ${stats.keys} cached key(s); the last refresh failed: ${stats.lastError}`,
    };
  }
  return { state: 'ok', detail: `${stats.keys} key(s) in service` };
}

export async function dependencyReport(
  sources: DependencySources,
  pingTimeoutMs = 500,
): Promise<DependencyReport> {
  let clamd: DependencyStatus = {
    state: 'not_configured',
    detail: 'no clamd configured: routes that scan answer by their scan.on_error',
  };
  if (sources.clamd) {
    const at = sources.clamd.address;
    const pong = await sources.clamd.ping(pingTimeoutMs).catch(() => false);
    clamd = pong
      ? { state: 'ok', detail: `clamd at ${at} answers PING` }
      : {
          state: 'unavailable',
          detail: `clamd at ${at} does not answer PING within ${pingTimeoutMs} ms: routes that scan answer by their scan.on_error`,
        };
  }
  const jwks: Record<string, DependencyStatus> = {};
  for (const [issuer, keys] of sources.keySets()) jwks[issuer] = jwksStatus(keys.stats());
  return { quota_store: quotaStoreStatus(sources.quotaStore()), clamd, jwks };
}
