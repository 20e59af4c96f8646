// Catalog loading: YAML text → schema validation → cross-reference checks → compiled, frozen Catalog.
// Every problem is reported with file, line, column and the path inside the document, all at once.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { z } from 'zod';
import type { Header } from '../decision.js';
import { blockListOf, parseCidr } from '../net/cidr.js';
import type { AccessPolicy, Catalog, Partner, RouteMatcher, RoutePolicy } from './catalog.js';
import { compilePathMatch, patternError } from './match.js';
import { type AccessDocument, type CatalogDocument, catalogSchema, type RouteDocument } from './schema.js';

export type DocPath = readonly (string | number)[];

export interface CatalogIssue {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly path: string;
  readonly message: string;
}

export function formatIssue(issue: CatalogIssue): string {
  return `${issue.file}:${issue.line}:${issue.column}: ${issue.path}: ${issue.message}`;
}

export class CatalogError extends Error {
  constructor(readonly issues: readonly CatalogIssue[]) {
    super(`invalid policy catalog:\n${issues.map(formatIssue).join('\n')}`);
    this.name = 'CatalogError';
  }
}

export async function loadCatalogFile(file: string): Promise<Catalog> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err: unknown) {
    const message = err instanceof Error ? err.message : String(err);
    throw new CatalogError([
      { file, line: 0, column: 0, path: '(file)', message: `cannot read: ${message}` },
    ]);
  }
  return parseCatalog(text, file);
}

export function parseCatalog(text: string, file: string): Catalog {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number) => lines.linePos(offset);
  if (doc.errors.length > 0) {
    throw new CatalogError(
      doc.errors.map((e) => {
        const pos = at(e.pos[0]);
        return {
          file,
          line: pos.line,
          column: pos.col,
          path: '(yaml)',
          message: e.message.split('\n')[0] ?? '',
        };
      }),
    );
  }
  const locate = (path: DocPath, message: string): CatalogIssue => {
    const pos = at(offsetOf(doc.contents, path));
    return { file, line: pos.line, column: pos.col, path: pathText(path), message };
  };

  const parsed = catalogSchema.safeParse(doc.toJS() ?? {}, { reportInput: true });
  if (!parsed.success) throw new CatalogError(parsed.error.issues.flatMap((i) => schemaIssues(i, locate)));
  const problems = crossCheck(parsed.data).map((p) => locate(p.path, p.message));
  if (problems.length > 0) throw new CatalogError(problems);

  const version = `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
  return deepFreeze(compile(parsed.data, version, file));
}

function schemaIssues(
  issue: z.core.$ZodIssue,
  locate: (path: DocPath, message: string) => CatalogIssue,
): CatalogIssue[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => locate([...path, k], `unknown key "${k}"`));
    case 'invalid_type':
      return [locate(path, `expected ${issue.expected}, got ${describe(issue.input)}`)];
    case 'invalid_value':
      return [locate(path, `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`)];
    case 'invalid_key':
      return issue.issues.map((i) => locate(path, i.message));
    case 'invalid_union':
      return [locate(path, unionMessage(path))];
    default:
      return [locate(path, issue.message)];
  }
}

function unionMessage(path: DocPath): string {
  return path.at(-1) === 'path'
    ? 'must have exactly one of "prefix", "exact" or "pattern", starting with "/"'
    : 'does not match any allowed form';
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the key is required)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'a mapping' : typeof value;
}

/** A host name (or IP literal) without port, `*.suffix`, or `*`. */
const HOST = /^(\*|(\*\.)?[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:.]+\])$/;

interface Problem {
  readonly path: DocPath;
  readonly message: string;
}

/** Checks the schema cannot express: uniqueness, references, CIDRs, patterns. */
function crossCheck(doc: CatalogDocument): Problem[] {
  const problems: Problem[] = [];
  const partnerIds = new Map<string, number>();
  const principals = new Map<string, string>();
  doc.partners.forEach((p, i) => {
    if (partnerIds.has(p.id)) {
      problems.push({ path: ['partners', i, 'id'], message: `duplicate partner id "${p.id}"` });
    }
    partnerIds.set(p.id, i);
    p.identities.principals.forEach((principal, j) => {
      const owner = principals.get(principal);
      if (owner !== undefined && owner !== p.id) {
        problems.push({
          path: ['partners', i, 'identities', 'principals', j],
          message: `principal "${principal}" already belongs to partner "${owner}"`,
        });
      }
      principals.set(principal, p.id);
    });
  });

  const checkAccess = (access: AccessDocument, base: DocPath) => {
    for (const list of ['allow', 'deny'] as const) {
      access[list].partners.forEach((id, j) => {
        if (!partnerIds.has(id)) {
          problems.push({ path: [...base, list, 'partners', j], message: `unknown partner "${id}"` });
        }
      });
      access[list].cidrs.forEach((cidr, j) => {
        const parsed = parseCidr(cidr);
        if (typeof parsed === 'string') problems.push({ path: [...base, list, 'cidrs', j], message: parsed });
      });
    }
  };
  checkAccess(doc.access, ['access']);

  const routeNames = new Set<string>();
  doc.routes.forEach((r, i) => {
    if (routeNames.has(r.name)) {
      problems.push({ path: ['routes', i, 'name'], message: `duplicate route name "${r.name}"` });
    }
    routeNames.add(r.name);
    checkAccess(r.access, ['routes', i, 'access']);
    r.match.hosts.forEach((host, j) => {
      if (!HOST.test(host)) {
        problems.push({
          path: ['routes', i, 'match', 'hosts', j],
          message: `"${host}" is not a host name, "*.domain" or "*" (no ports, no other wildcards)`,
        });
      }
    });
    if ('pattern' in r.match.path) {
      const error = patternError(r.match.path.pattern);
      if (error) problems.push({ path: ['routes', i, 'match', 'path', 'pattern'], message: error });
    }
  });
  if (doc.default_route !== undefined && !routeNames.has(doc.default_route)) {
    problems.push({ path: ['default_route'], message: `unknown route "${doc.default_route}"` });
  }
  return problems;
}

function compile(doc: CatalogDocument, version: string, file: string): Catalog {
  const partners = new Map<string, Partner>();
  const partnersByPrincipal = new Map<string, Partner>();
  for (const p of doc.partners) {
    const partner: Partner = { id: p.id, name: p.name, status: p.status };
    partners.set(p.id, partner);
    for (const principal of p.identities.principals) partnersByPrincipal.set(principal, partner);
  }
  const routes = doc.routes.map(compileRoute);
  const routesByName = new Map(routes.map((r) => [r.name, r]));
  return {
    version,
    versionName: doc.version_name ?? '',
    file,
    settings: {
      problemBaseUrl: doc.settings.problem_base_url,
      maxHeaderValueBytes: doc.settings.max_header_value_bytes,
      auditHeaders: doc.settings.audit.headers,
    },
    access: compileAccess(doc.access),
    routes,
    routesByName,
    defaultRoute: doc.default_route === undefined ? undefined : routesByName.get(doc.default_route),
    partners,
    partnersByPrincipal,
  };
}

function compileRoute(r: RouteDocument): RoutePolicy {
  const hosts = r.match.hosts.map((h) => h.toLowerCase());
  const match: RouteMatcher = {
    anyHost: hosts.includes('*'),
    exactHosts: new Set(hosts.filter((h) => !h.startsWith('*'))),
    hostSuffixes: hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
    path: compilePathMatch(r.match.path),
    methods: new Set(r.match.methods),
  };
  return {
    name: r.name,
    match,
    identityRequired: r.identity.required,
    access: compileAccess(r.access),
    onError: r.on_error,
    upstreamSet: headersOf(r.upstream_headers.set),
    upstreamRemove: [...r.upstream_headers.remove],
    responseSet: headersOf(r.response_headers.set),
  };
}

function compileAccess(a: AccessDocument): AccessPolicy {
  return {
    allowPartners: new Set(a.allow.partners),
    denyPartners: new Set(a.deny.partners),
    allowCidrs: blockListOf(a.allow.cidrs),
    denyCidrs: blockListOf(a.deny.cidrs),
  };
}

const headersOf = (record: Record<string, string>): Header[] =>
  Object.entries(record).map(([name, value]) => ({ name, value }));

/** Offset of the node at `path`, or of its nearest existing ancestor (e.g. for a missing key). */
function offsetOf(root: unknown, path: DocPath): number {
  let node: unknown = root;
  let offset = rangeStart(root);
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key);
      if (!pair) return offset;
      // Point at the key for unknown keys and scalars, which is where a reader looks.
      offset = rangeStart(pair.key);
      node = pair.value;
      if (isMap(node) || isSeq(node)) offset = rangeStart(pair.key);
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key];
      if (item === undefined) return offset;
      node = item;
      offset = rangeStart(item);
    } else {
      return offset;
    }
  }
  return offset;
}

function rangeStart(node: unknown): number {
  const range = (node as Node | null)?.range;
  return range ? range[0] : 0;
}

function pathText(path: DocPath): string {
  if (path.length === 0) return '(root)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    // BlockList, Set and Map are frozen shallowly: their contents are not reachable as properties.
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
