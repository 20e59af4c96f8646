// Stage 3, identify: which partner is calling. For now from the mTLS principal Envoy reports
// (SPIFFE id, DNS SAN or subject); JWT and API keys plug in here as further credential sources.
import type { Catalog, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import { type Identity, pass, refuse, type StageResult } from './types.js';

const ANONYMOUS: Identity = Object.freeze({ partner: null, method: 'none', subject: '' });

export function identifyStage(request: Request, catalog: Catalog, route: RoutePolicy): StageResult<Identity> {
  const principal = request.source.principal;
  if (principal === '') {
    return route.identityRequired
      ? refuse({ code: 'credentials_missing', reason: 'no client certificate principal' })
      : pass(ANONYMOUS);
  }
  // Credentials that were presented must be valid even where the route would admit anonymous callers.
  const partner = catalog.partnersByPrincipal.get(principal);
  if (!partner)
    return refuse({ code: 'partner_unknown', reason: `principal ${principal} maps to no partner` });
  if (partner.status !== 'active') {
    return refuse({
      code: 'partner_suspended',
      partner: partner.id,
      reason: `partner ${partner.id} is ${partner.status}`,
    });
  }
  return pass({ partner, method: 'mtls', subject: principal });
}
