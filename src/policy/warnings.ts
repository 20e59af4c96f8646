// Catalog warnings: legal catalogs that are likely not what their author meant. `policy validate`
// prints them (the catalog still loads); each names the path inside the document, located like errors.
import type { CatalogDocument, RouteDocument } from './schema.js';
import type { DocPath } from './yaml-issues.js';

export interface CatalogWarning {
  readonly path: DocPath;
  readonly message: string;
}

/** Any host and every path: `prefix: /` or `pattern: /**`. */
function isCatchAll(r: RouteDocument): boolean {
  const p = r.match.path;
  const everyPath = ('prefix' in p && p.prefix === '/') || ('pattern' in p && p.pattern === '/**');
  return everyPath && r.match.hosts.includes('*');
}

export function catalogWarnings(doc: CatalogDocument): CatalogWarning[] {
  const warnings: CatalogWarning[] = [];
  doc.routes.forEach((r, i) => {
    if (i === 0 || !isCatchAll(r) || r.match.hosts.length === 0) return;
    const before = doc.routes
      .slice(0, i)
      .filter((o) => !isCatchAll(o) && o.match.hosts.length > 0)
      .map((o) => o.name);
    if (before.length === 0) return;
    warnings.push({
      path: ['routes', i, 'match', 'path'],
      message:
        `catch-all route "${r.name}" follows more specific routes (${before.slice(0, 5).join(', ')}${before.length > 5 ? ', …' : ''}): ` +
        `every request they do not match (another host, path or path variant) is judged by "${r.name}"'s rules; ` +
        'methods they refuse get 405. Check that this is meant, or give it explicit hosts and paths',
    });
  });
  return warnings;
}
