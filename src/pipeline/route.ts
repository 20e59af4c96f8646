// Stage 2, route: which catalog route governs this request.
import type { Catalog, RoutePolicy } from '../policy/catalog.js';
import { matchRoute } from '../policy/match.js';
import type { Request } from '../request.js';
import { pass, refuse, type StageResult } from '../stage.js';

/** The context extension Envoy sets per route (`check_settings.context_extensions`). */
export const ROUTE_EXTENSION = 'route';

export function routeStage(request: Request, catalog: Catalog): StageResult<RoutePolicy> {
  const found = matchRoute(
    catalog,
    request.contextExtensions.get(ROUTE_EXTENSION),
    request.host,
    request.path,
    request.method,
  );
  switch (found.kind) {
    case 'route':
      return pass(found.route);
    case 'method':
      return refuse({
        code: 'method_not_allowed',
        detail: `This route accepts ${found.allowed.join(', ')}.`,
        reason: `method ${request.method} not in [${found.allowed.join(',')}]`,
        headers: [{ name: 'allow', value: found.allowed.join(', ') }],
      });
    case 'unknown_name':
      // Envoy names a route the catalog lacks: a deployment mismatch, logged loudly.
      return refuse({
        code: 'route_not_found',
        reason: `context extension route="${found.name}" is not in the catalog`,
      });
    case 'none':
      return refuse({ code: 'route_not_found', reason: `no route for ${request.host}${request.path}` });
  }
}
