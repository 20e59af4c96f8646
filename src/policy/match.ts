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

/**
 * The form of a request path that routes are matched against: ASCII lower case, without one trailing
 * slash (except for "/" itself). Upstreams differ on whether `/V1/ADMIN` or `/v1/admin/` is the same
 * resource as `/v1/admin`: matching every such variant by the same route means none of them can be
 * judged by another, broader route. (Paths with `;` parameters are refused before matching.)
 */
export function routingPath(path: string): string {
  const end = path.length > 1 && path.charCodeAt(path.length - 1) === 47 ? path.length - 1 : path.length;
  const trimmed = end === path.length ? path : path.slice(0, end);
  return /[A-Z]/.test(trimmed) ? trimmed.toLowerCase() : trimmed;
}

/** Compiles a path match; the function it returns expects a path already put through routingPath. */
export function compilePathMatch(match: PathMatchDocument): (path: string) => boolean {
  if ('exact' in match) {
    const exact = routingPath(match.exact);
    return (path) => path === exact;
  }
  if ('prefix' in match) {
    // A prefix matches whole segments: "/v1/orders" matches "/v1/orders/7" but not "/v1/ordersX".
    const lower = match.prefix.toLowerCase();
    const prefix = lower.endsWith('/') ? lower.slice(0, -1) : lower;
    if (prefix === '') return () => true;
    return (path) => path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47);
  }
  const source = match.pattern
    .split('/')
    .slice(1)
    .map((segment) => {
      if (segment === '**') return '(?:/.*)?';
      if (PARAM.test(segment)) return '/[^/]+';
      return `/${segment.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
    })
    .join('');
  const regex = new RegExp(`^${source}$`);
  return (path) => regex.test(path);
}

/**
 * Two routes with the same owner key match exactly the same hosts and paths: only such routes may
 * split one path among themselves by method.
 */
export function ownerKey(hosts: readonly string[], match: PathMatchDocument): string {
  const sortedHosts = [...new Set(hosts.map((h) => h.toLowerCase()))].sort();
  const path =
    'exact' in match
      ? `exact ${routingPath(match.exact)}`
      : 'prefix' in match
        ? `prefix ${match.prefix.toLowerCase().replace(/\/$/, '')}`
        : `pattern ${match.pattern
            .split('/')
            .map((s) => (PARAM.test(s) ? '{}' : s.toLowerCase()))
            .join('/')}`;
  return `${sortedHosts.join(',')} ${path}`;
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
 * Finds the route: by the `route` context extension Envoy sets per route, else by host and path, else
 * the default route. The first route whose host and path match owns the request: if it does not
 * accept the method, only the routes after it with the very same host and path match (one path split
 * by method) are tried, then the answer is 405 with the Allow header. A broader route further down
 * (a catch-all) never judges a request that a more specific one refused by its method. Methods are
 * compared as sent: HTTP methods are case-sensitive, so `get` is not `GET`.
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
  let owner: string | undefined;
  const routed = routingPath(path);
  for (const route of catalog.routes) {
    const m = route.match;
    if (owner !== undefined && m.owner !== owner) continue;
    if (!hostMatches(m, host) || !m.path(routed)) continue;
    owner = m.owner;
    if (m.methods.size === 0 || m.methods.has(method)) return { kind: 'route', route };
    allowed ??= [];
    for (const verb of m.methods) if (!allowed.includes(verb)) allowed.push(verb);
  }
  // A route that owns this path but not this method answers 405, even with a default route or a
  // catch-all: falling through would judge the request by another route's rules.
  if (allowed) return { kind: 'method', allowed };
  if (catalog.defaultRoute) return { kind: 'route', route: catalog.defaultRoute };
  return { kind: 'none' };
}
