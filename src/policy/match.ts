// Route matching: compiled once at load time, evaluated per Check without allocation.
import type { Catalog, RouteMatcher, RoutePolicy } from './catalog.js';
import type { PathMatchDocument } from './schema.js';

const PARAM = /^\{[A-Za-z_][A-Za-z0-9_]*\}$/;

/** Why a `pattern` is invalid, or '' when it is fine. */
export function patternError(pattern: string): string {
  const segments = pattern.split('/').slice(1);
  for (const [i, segment] of segments.entries()) {
    if (segment === '**') {
      if (i !== segments.length - 1) return '"/**" is only allowed at the end of a pattern';
      continue;
    }
    if ((segment.includes('{') || segment.includes('}')) && !PARAM.test(segment)) {
      return `segment "${segment}" must be a literal or a whole {name} parameter`;
    }
  }
  return '';
}

export function compilePathMatch(match: PathMatchDocument): (path: string) => boolean {
  if ('exact' in match) {
    const exact = match.exact;
    return (path) => path === exact;
  }
  if ('prefix' in match) {
    // A prefix matches whole segments: "/v1/orders" matches "/v1/orders/7" but not "/v1/ordersX".
    const prefix = match.prefix.endsWith('/') ? match.prefix.slice(0, -1) : match.prefix;
    if (prefix === '') return () => true;
    return (path) => path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47);
  }
  const source = match.pattern
    .split('/')
    .slice(1)
    .map((segment) => {
      if (segment === '**') return '(?:/.*)?';
      if (PARAM.test(segment)) return '/[^/]+';
      return `/${segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
    })
    .join('');
  const regex = new RegExp(`^${source}$`);
  return (path) => regex.test(path);
}

function hostMatches(m: RouteMatcher, host: string): boolean {
  if (m.anyHost || m.exactHosts.has(host)) return true;
  for (const suffix of m.hostSuffixes) {
    if (host.length > suffix.length && host.endsWith(suffix)) return true;
  }
  return false;
}

export type RouteMatch =
  | { readonly kind: 'route'; readonly route: RoutePolicy }
  | { readonly kind: 'unknown_name'; readonly name: string }
  | { readonly kind: 'method'; readonly allowed: readonly string[] }
  | { readonly kind: 'none' };

/**
 * Finds the route: by the `route` context extension Envoy sets per route, else the first route whose
 * host, path and method match, else the default route. A path that matches only with another
 * method is reported as such, so the partner gets 405 and the Allow header instead of 404.
 */
export function matchRoute(
  catalog: Catalog,
  named: string | undefined,
  host: string,
  path: string,
  method: string,
): RouteMatch {
  if (named !== undefined && named !== '') {
    const route = catalog.routesByName.get(named);
    if (!route) return { kind: 'unknown_name', name: named };
    const methods = route.match.methods;
    if (methods.size > 0 && !methods.has(method)) return { kind: 'method', allowed: [...methods] };
    return { kind: 'route', route };
  }
  let allowed: string[] | undefined;
  for (const route of catalog.routes) {
    const m = route.match;
    if (!hostMatches(m, host) || !m.path(path)) continue;
    if (m.methods.size === 0 || m.methods.has(method)) return { kind: 'route', route };
    allowed ??= [];
    for (const verb of m.methods) if (!allowed.includes(verb)) allowed.push(verb);
  }
  // A route that owns this path but not this method answers 405, even with a default route:
  // falling through to the default would judge the request by another route's rules.
  if (allowed) return { kind: 'method', allowed };
  if (catalog.defaultRoute) return { kind: 'route', route: catalog.defaultRoute };
  return { kind: 'none' };
}
