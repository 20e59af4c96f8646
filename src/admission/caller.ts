// Who a Check comes from, for fair admission, decided before anything is verified (verifying is
// the work admission control protects). The key must cost nothing to compute:
//
//   1. the mTLS principal Envoy verified (`mtls:` + principal): one key per partner certificate;
//   2. else the credential as presented, the route's API key header or Authorization (`cred:` + value):
//      one key per API key or per token;
//   3. else the source address (`ip:` + address).
//
// Trade-off: a credential is not verified here, so a caller can split itself into several keys by
// sending different (even invalid) tokens, and a partner whose users each hold a token gets a
// share per token. Those Checks are still bounded by the limit and the queue, and an invalid
// credential costs one cheap identify step once admitted. Behind mTLS the key is the verified
// certificate, which is what partners of this gateway normally present.
// The key is used only as a map key in memory: never logged, never a metric label.
import type { Catalog, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';

export function callerKey(request: Request, route: RoutePolicy): string {
  const principal = request.source.principal;
  if (principal !== '') return `mtls:${principal}`;
  const key = request.headers.get(route.identity.apiKeyHeader);
  if (key) return `cred:${key}`;
  const authorization = request.headers.get('authorization');
  if (authorization) return `cred:${authorization}`;
  return `ip:${request.source.address}`;
}

/**
 * The partner a shed Check belongs to, for the audit log and metrics: known only from the mTLS
 * principal (verified by Envoy, mapped by the catalog); '' otherwise (nothing was verified).
 */
export function claimedPartner(request: Request, catalog: Catalog): string {
  const principal = request.source.principal;
  return principal === '' ? '' : (catalog.partnersByPrincipal.get(principal)?.id ?? '');
}
