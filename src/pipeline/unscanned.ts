// Nothing unscanned: when a Check fails (internal error, missed deadline, unavailable dependency)
// before its body was scanned, a route whose scan refuses on error (scan.on_error: deny, the default)
// refuses the request, whatever the route's own on_error says. Otherwise which answer a slow clamd or
// a slow stage gets would depend on which timer fires first.
import type { RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import { contentPolicyFor } from './content.js';
import type { Identity } from './outcomes.js';

/** True when this request's body would be scanned with scan.on_error: deny on this route. */
export function mustBeScanned(request: Request, route: RoutePolicy, identity: Identity | undefined): boolean {
  if (!route.content || (request.body.length === 0 && !request.bodyTruncated)) return false;
  // Before the caller is known, any partner's content rules might apply: the strictest decides.
  const policies = identity
    ? [contentPolicyFor(route, identity)]
    : [route.content.policy, ...route.content.byPartner.values()];
  return policies.some((p) => p?.scan?.onError === 'deny');
}
