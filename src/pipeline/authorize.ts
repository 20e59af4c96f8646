// Stage 4, authorize: may this partner, from this address, use this route?
// Global lists first, then the route's; within each, deny lists win over allow lists.
import type { Denial } from '../decision.js';
import { normalizeAddress } from '../net/cidr.js';
import type { AccessPolicy, Catalog, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import { type Identity, pass, refuse, type StageResult } from './types.js';

export function authorizeStage(
  request: Request,
  catalog: Catalog,
  route: RoutePolicy,
  identity: Identity,
): StageResult<null> {
  const denial =
    checkAccess(catalog.access, 'global', request, identity) ??
    checkAccess(route.access, `route ${route.name}`, request, identity);
  return denial ? refuse(denial) : pass(null);
}

function checkAccess(
  access: AccessPolicy,
  scope: string,
  request: Request,
  identity: Identity,
): Denial | null {
  if (access.denyCidrs || access.allowCidrs) {
    const source = normalizeAddress(request.source.address);
    if (!source) {
      return {
        code: 'source_ip_denied',
        reason: `${scope}: source address "${request.source.address}" unknown`,
      };
    }
    if (access.denyCidrs?.check(source.address, source.family)) {
      return { code: 'source_ip_denied', reason: `${scope}: ${source.address} is on the deny list` };
    }
    if (access.allowCidrs && !access.allowCidrs.check(source.address, source.family)) {
      return { code: 'source_ip_denied', reason: `${scope}: ${source.address} is not on the allow list` };
    }
  }
  const partner = identity.partner?.id;
  if (partner !== undefined && access.denyPartners.has(partner)) {
    return { code: 'partner_denied', reason: `${scope}: partner ${partner} is on the deny list` };
  }
  if (access.allowPartners.size > 0 && (partner === undefined || !access.allowPartners.has(partner))) {
    return {
      code: 'partner_not_allowed',
      reason: `${scope}: partner ${partner ?? '(anonymous)'} is not on the allow list`,
    };
  }
  return null;
}
