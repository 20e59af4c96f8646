// Catalog loading: YAML text → schema validation → cross-reference checks → compiled, frozen Catalog.
// Every problem is reported with file, line, column and the path inside the document, all at once.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { IANAZone } from 'luxon';
import type { Header } from '../decision.js';
import type { JwksSource } from '../identity/jwks.js';
import { StaticRevocations } from '../identity/revocation.js';
import { blockListOf, parseCidr } from '../net/cidr.js';
import { validateLimit } from '../quota/algorithms.js';
import {
  type AccessPolicy,
  type ApiKeyEntry,
  applicationKey,
  type Catalog,
  type CatalogReference,
  type Credential,
  type IssuerPolicy,
  type Partner,
  type QuotaLimitPolicy,
  type RouteContent,
  type RouteMatcher,
  type RoutePolicy,
} from './catalog.js';
import { type ContentFields, ContentKeyError, compileContent, mergeContent } from './content.js';
import { compilePathMatch, ownerKey, patternError } from './match.js';
import { catalogVersion, FileCache, referencesOf } from './references.js';
import { type CompiledRule, compileRule } from './rules.js';
import {
  type AccessDocument,
  type CatalogDocument,
  catalogSchema,
  type IssuerDocument,
  type QuotaLimitDocument,
  type RouteDocument,
  type RuleDocument,
} from './schema.js';
import { catalogWarnings } from './warnings.js';
import { type CatalogIssue, type DocPath, formatIssue, parseYaml } from './yaml-issues.js';

export { type CatalogIssue, type DocPath, formatIssue } from './yaml-issues.js';

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
  const parsed = parseYaml(text, file, catalogSchema, unionMessage);
  if (!parsed.ok) throw new CatalogError(parsed.issues);
  const { locate } = parsed;
  // One read per named file: the bytes compiled are the bytes in the version.
  const files = new FileCache();
  const problems = crossCheck(parsed.data, dirname(file), files).map((p) => locate(p.path, p.message));
  if (problems.length > 0) throw new CatalogError(problems);

  const references = referencesOf(parsed.data, dirname(file), files);
  const version = catalogVersion(text, references);
  const warnings = catalogWarnings(parsed.data).map((w) => locate(w.path, w.message));
  return deepFreeze({ ...compile(parsed.data, version, file, files, references), warnings });
}

function unionMessage(path: DocPath): string {
  switch (path.at(-1)) {
    case 'path':
      return 'must have exactly one of "prefix", "exact" or "pattern", starting with "/"';
    case 'jwks':
      return 'must have either "url" (with its options) or "file"';
    case 'cost':
      return 'must be a whole number of units, or {per_body_bytes: N}';
    default:
      return 'does not match any allowed form';
  }
}

/** A host name (or IP literal) without port, `*.suffix`, or `*`. */
const HOST = /^(\*|(\*\.)?[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:.]+\])$/;

interface Problem {
  readonly path: DocPath;
  readonly message: string;
}

/** Checks the schema cannot express: uniqueness, references, CIDRs, patterns. */
function crossCheck(doc: CatalogDocument, dir: string, files: FileCache): Problem[] {
  const problems: Problem[] = [];
  /** Records `value` as owned by `owner`; a second owner is a problem at `path`. */
  const claim = (owners: Map<string, string>, value: string, owner: string, path: DocPath, what: string) => {
    const first = owners.get(value);
    if (first === owner) problems.push({ path, message: `duplicate ${what} "${value}"` });
    else if (first !== undefined)
      problems.push({ path, message: `${what} "${value}" already belongs to ${first}` });
    owners.set(value, owner);
  };
  const unique = (seen: Set<string>, value: string, path: DocPath, what: string) => {
    if (seen.has(value)) problems.push({ path, message: `duplicate ${what} "${value}"` });
    seen.add(value);
  };

  const partnerIds = new Set<string>();
  const principals = new Map<string, string>();
  const applications = new Map<string, string>();
  const keyIds = new Map<string, string>();
  const keyHashes = new Map<string, string>();
  doc.partners.forEach((p, i) => {
    unique(partnerIds, p.id, ['partners', i, 'id'], 'partner id');
    const base = ['partners', i, 'identities'] as const;
    const owner = `partner "${p.id}"`;
    p.identities.principals.forEach((v, j) => {
      claim(principals, v, owner, [...base, 'principals', j], 'principal');
    });
    p.identities.applications.forEach((v, j) => {
      const path = [...base, 'applications', j];
      if (typeof v === 'string') {
        claim(applications, v, owner, path, 'application');
        if (doc.issuers.length > 1) {
          problems.push({
            path,
            message: `with several issuers, name the issuer: {client_id: ${v}, issuer: ...}`,
          });
        }
      } else {
        claim(applications, `${v.client_id} (issuer ${v.issuer})`, owner, path, 'application');
        if (!doc.issuers.some((iss) => iss.name === v.issuer)) {
          problems.push({ path: [...path, 'issuer'], message: `unknown issuer "${v.issuer}"` });
        }
      }
    });
    p.identities.api_keys.forEach((k, j) => {
      claim(keyIds, k.id, owner, [...base, 'api_keys', j, 'id'], 'API key id');
      claim(keyHashes, k.hash, `API key "${k.id}"`, [...base, 'api_keys', j, 'hash'], 'API key hash');
    });
  });

  const planNames = new Set<string>();
  doc.plans.forEach((plan, i) => {
    unique(planNames, plan.name, ['plans', i, 'name'], 'plan name');
  });
  const routeNamesAll = new Set(doc.routes.map((r) => r.name));
  const checkLimit = (limit: QuotaLimitDocument, base: DocPath) => {
    limit.routes.forEach((route, j) => {
      if (!routeNamesAll.has(route)) {
        problems.push({ path: [...base, 'routes', j], message: `unknown route "${route}"` });
      }
    });
    const problem = limitProblem(limit);
    if (problem) problems.push({ path: [...base, 'name'], message: problem });
  };
  doc.plans.forEach((plan, i) => {
    const seen = new Set<string>();
    plan.limits.forEach((limit, j) => {
      unique(seen, limit.name, ['plans', i, 'limits', j, 'name'], 'limit name');
      checkLimit(limit, ['plans', i, 'limits', j]);
    });
  });
  doc.partners.forEach((p, i) => {
    if (!IANAZone.isValidZone(p.time_zone)) {
      problems.push({
        path: ['partners', i, 'time_zone'],
        message: `"${p.time_zone}" is not an IANA time zone`,
      });
    }
    const plan = p.plan === undefined ? undefined : doc.plans.find((candidate) => candidate.name === p.plan);
    if (p.plan !== undefined && !plan)
      problems.push({ path: ['partners', i, 'plan'], message: `unknown plan "${p.plan}"` });
    const seen = new Set(plan?.limits.map((l) => l.name));
    p.limits.forEach((limit, j) => {
      const path = ['partners', i, 'limits', j];
      if (seen.has(limit.name)) {
        problems.push({
          path: [...path, 'name'],
          message: `limit "${limit.name}" is already defined (by the partner or its plan)`,
        });
      }
      seen.add(limit.name);
      checkLimit(limit, path);
    });
  });

  // Route limits: unique names, none shared with a plan's or a partner's limit (one charge holds
  // both, and a limit's name is its id in headers and metrics).
  const partnerLimitNames = new Set([
    ...doc.plans.flatMap((plan) => plan.limits.map((l) => l.name)),
    ...doc.partners.flatMap((p) => p.limits.map((l) => l.name)),
  ]);
  doc.routes.forEach((r, i) => {
    const seen = new Set<string>();
    r.quota.limits.forEach((limit, j) => {
      const path = ['routes', i, 'quota', 'limits', j];
      unique(seen, limit.name, [...path, 'name'], 'limit name');
      if (partnerLimitNames.has(limit.name)) {
        problems.push({
          path: [...path, 'name'],
          message: `limit "${limit.name}" is also a plan or partner limit: give the route's limit its own name`,
        });
      }
      checkLimit({ ...limit, routes: [] }, path);
    });
  });

  const checkRules = (rules: readonly RuleDocument[], base: DocPath) => {
    const seen = new Set<string>();
    rules.forEach((r, j) => {
      unique(seen, r.name, [...base, j, 'name'], 'rule name');
      const compiled = compileRule(ruleSpec(r));
      if (typeof compiled === 'string') problems.push({ path: [...base, j, 'when'], message: compiled });
    });
  };
  doc.partners.forEach((p, i) => {
    checkRules(p.rules, ['partners', i, 'rules']);
  });
  doc.routes.forEach((r, i) => {
    checkRules(r.rules, ['routes', i, 'rules']);
    if (!r.content) return;
    const { partners, ...base } = r.content;
    const tryCompile = (fields: ContentFields, path: DocPath) => {
      try {
        compileContent(fields, dir, files);
      } catch (err: unknown) {
        // A key that cannot compile is located at that key, with the cause's own words.
        const at = err instanceof ContentKeyError ? err.at : [];
        problems.push({ path: [...path, ...at], message: err instanceof Error ? err.message : String(err) });
      }
    };
    tryCompile(base, ['routes', i, 'content']);
    for (const [id, over] of Object.entries(partners)) {
      const path = ['routes', i, 'content', 'partners', id];
      if (!doc.partners.some((p) => p.id === id)) problems.push({ path, message: `unknown partner "${id}"` });
      else tryCompile(mergeContent(base, over), path);
    }
  });

  const issuerNames = new Set<string>();
  const issuerValues = new Map<string, string>();
  doc.issuers.forEach((iss, i) => {
    unique(issuerNames, iss.name, ['issuers', i, 'name'], 'issuer name');
    claim(issuerValues, iss.issuer, `issuer "${iss.name}"`, ['issuers', i, 'issuer'], 'issuer');
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
    unique(routeNames, r.name, ['routes', i, 'name'], 'route name');
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
    r.identity.jwt.issuers.forEach((name, j) => {
      if (!issuerNames.has(name)) {
        problems.push({
          path: ['routes', i, 'identity', 'jwt', 'issuers', j],
          message: `unknown issuer "${name}"`,
        });
      }
    });
    if (r.identity.all_of.includes('jwt') && doc.issuers.length === 0) {
      problems.push({
        path: ['routes', i, 'identity', 'all_of'],
        message: 'requires jwt, but the catalog has no issuers',
      });
    }
    if (r.identity.jwt.bind_certificate && !acceptedCredentials(r).has('jwt')) {
      problems.push({
        path: ['routes', i, 'identity', 'jwt', 'bind_certificate'],
        message: 'binds tokens to certificates, but the route does not accept jwt',
      });
    }
  });
  if (doc.default_route !== undefined && !routeNames.has(doc.default_route)) {
    problems.push({ path: ['default_route'], message: `unknown route "${doc.default_route}"` });
  }
  return problems;
}

const ALL_CREDENTIALS: readonly Credential[] = ['mtls', 'jwt', 'api_key'];

/** any_of ∪ all_of, with any_of defaulting to all_of (when set) or to every kind. */
function acceptedCredentials(r: RouteDocument): Set<Credential> {
  const { any_of, all_of } = r.identity;
  return new Set([...(any_of ?? (all_of.length > 0 ? [] : ALL_CREDENTIALS)), ...all_of]);
}

function compile(
  doc: CatalogDocument,
  version: string,
  file: string,
  files: FileCache,
  references: readonly CatalogReference[],
): Omit<Catalog, 'warnings'> {
  const partners = new Map<string, Partner>();
  const partnersByPrincipal = new Map<string, Partner>();
  const partnersByApplication = new Map<string, Partner>();
  const apiKeysByHash = new Map<string, ApiKeyEntry>();
  const plans = new Map(doc.plans.map((plan) => [plan.name, plan.limits.map(compileLimit)]));
  for (const p of doc.partners) {
    const partner: Partner = {
      id: p.id,
      name: p.name,
      status: p.status,
      timeZone: p.time_zone,
      limits: [...((p.plan && plans.get(p.plan)) || []), ...p.limits.map(compileLimit)],
      rules: p.rules.map(compileChecked),
    };
    partners.set(p.id, partner);
    for (const principal of p.identities.principals) partnersByPrincipal.set(principal, partner);
    for (const app of p.identities.applications) {
      partnersByApplication.set(
        typeof app === 'string' ? app : applicationKey(app.issuer, app.client_id),
        partner,
      );
    }
    for (const key of p.identities.api_keys) {
      const digest = key.hash.slice('hmac-sha256:'.length);
      apiKeysByHash.set(digest, {
        id: key.id,
        partner,
        hash: Buffer.from(digest, 'base64url'),
        status: key.status,
        expiresAt: key.expires_at === undefined ? null : Date.parse(key.expires_at),
      });
    }
  }
  const routes = doc.routes.map((r) => compileRoute(r, dirname(file), files));
  const routesByName = new Map(routes.map((r) => [r.name, r]));
  const dir = dirname(file);
  const s = doc.settings;
  return {
    version,
    references,
    versionName: doc.version_name ?? '',
    file,
    settings: {
      problemBaseUrl: s.problem_base_url,
      maxHeaderValueBytes: s.max_header_value_bytes,
      auditHeaders: s.audit.headers,
      realm: s.realm,
      quotas: { replicas: s.quotas.replicas, idempotencySeconds: s.quotas.idempotency_seconds },
      trustXfcc: s.trust_xfcc,
      admission: {
        minLimit: s.admission.min_limit,
        maxLimit: s.admission.max_limit,
        initialLimit: s.admission.initial_limit,
        maxQueue: s.admission.max_queue,
        maxQueueWaitMs: s.admission.max_queue_wait_ms,
        latencyTolerance: s.admission.latency_tolerance,
        eventLoopDelayMs: s.admission.event_loop_delay_ms,
      },
      identityHeaders: { ...s.identity_headers },
    },
    access: compileAccess(doc.access),
    routes,
    routesByName,
    defaultRoute: doc.default_route === undefined ? undefined : routesByName.get(doc.default_route),
    partners,
    partnersByPrincipal,
    partnersByApplication,
    apiKeysByHash,
    issuers: doc.issuers.map((iss) => compileIssuer(iss, dir)),
    revocations: new StaticRevocations({
      jti: doc.revocations.jti,
      application: doc.revocations.applications,
      api_key: doc.revocations.api_keys,
    }),
  };
}

const ruleSpec = (r: RuleDocument) => ({
  name: r.name,
  when: r.when,
  action: r.action,
  message: r.message,
  dryRun: r.dry_run,
});

/** Compiles a rule crossCheck has already accepted. */
function compileChecked(r: RuleDocument): CompiledRule {
  const compiled = compileRule(ruleSpec(r));
  if (typeof compiled === 'string') throw new Error(`rule ${r.name}: ${compiled}`);
  return compiled;
}

/** What the quota stores would refuse at charge time, found at load time instead. */
function limitProblem(l: QuotaLimitDocument): string {
  if (l.name === 'rid') return '"rid" is reserved (it names request ids in the quota store)';
  try {
    const compiled = compileLimit(l);
    validateLimit({
      id: compiled.name,
      algorithm: compiled.algorithm,
      limit: compiled.limit,
      periodMs: compiled.periodMs,
      burst: compiled.burst,
      cost: compiled.cost.kind === 'constant' ? compiled.cost.units : 1,
      shadow: compiled.shadow,
      ...(compiled.window ? { window: { id: 'load-check', startMs: 0, endMs: 1 } } : {}),
    });
    return '';
  } catch (err: unknown) {
    return err instanceof Error ? err.message.replace(/^limit "[^"]*": /, '') : String(err);
  }
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `30s` → 30000. The schema has checked the form. */
export function durationMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  return match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : Number.NaN;
}

function compileLimit(l: QuotaLimitDocument): QuotaLimitPolicy {
  return {
    name: l.name,
    algorithm: l.algorithm,
    limit: l.limit,
    periodMs: l.period === undefined ? 0 : durationMs(l.period),
    window: l.window,
    burst: l.burst ?? l.limit,
    cost:
      typeof l.cost === 'number'
        ? { kind: 'constant', units: l.cost }
        : { kind: 'body', bytesPerUnit: l.cost.per_body_bytes },
    shadow: l.shadow,
    routes: new Set(l.routes),
    methods: new Set(l.methods),
    onStoreError: l.on_store_error,
  };
}

function compileIssuer(iss: IssuerDocument, dir: string): IssuerPolicy {
  const j = iss.jwks;
  const jwks: JwksSource =
    'url' in j
      ? {
          kind: 'url',
          url: j.url,
          timeoutMs: j.timeout_ms,
          ttlMs: j.ttl_seconds * 1000,
          cooldownMs: j.cooldown_seconds * 1000,
          maxStaleMs: j.max_stale_seconds * 1000,
        }
      : { kind: 'file', path: resolve(dir, j.file), ttlMs: j.ttl_seconds * 1000 };
  return {
    name: iss.name,
    issuer: iss.issuer,
    jwks,
    audiences: [...iss.audiences],
    algorithms: [...iss.algorithms],
    clockSkewSeconds: iss.clock_skew_seconds,
    maxLifetimeSeconds: iss.max_lifetime_seconds,
    requiredClaims: [...iss.required_claims],
    applicationClaims: [...iss.application_claims],
    userClaim: iss.user_claim,
  };
}

function compileRouteContent(
  content: RouteDocument['content'],
  dir: string,
  files: FileCache,
): RouteContent | null {
  if (!content) return null;
  const { partners, ...base } = content;
  return {
    policy: compileContent(base, dir, files),
    byPartner: new Map(
      Object.entries(partners).map(([id, over]) => [
        id,
        compileContent(mergeContent(base, over), dir, files),
      ]),
    ),
  };
}

function compileRoute(r: RouteDocument, dir: string, files: FileCache): RoutePolicy {
  const hosts = r.match.hosts.map((h) => h.toLowerCase());
  const match: RouteMatcher = {
    anyHost: hosts.includes('*'),
    exactHosts: new Set(hosts.filter((h) => !h.startsWith('*'))),
    hostSuffixes: hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
    path: compilePathMatch(r.match.path),
    owner: ownerKey(hosts, r.match.path),
    methods: new Set(r.match.methods),
  };
  const id = r.identity;
  return {
    name: r.name,
    match,
    identity: {
      required: id.required,
      accepted: acceptedCredentials(r),
      allOf: [...id.all_of],
      issuers: new Set(id.jwt.issuers),
      scopes: [...id.jwt.scopes],
      bindCertificate: id.jwt.bind_certificate,
      queryParam: id.jwt.query_param,
      maxAuthAgeSeconds: id.jwt.max_auth_age_seconds,
      acrValues: [...id.jwt.acr_values],
      apiKeyHeader: id.api_key.header,
      keepCredentials: id.keep_credentials,
    },
    quota: {
      headers: r.quota.headers,
      onStoreError: r.quota.on_store_error,
      limits: r.quota.limits.map((l) => ({
        ...compileLimit({ ...l, routes: [] }),
        per: l.per,
        sourcePrefix: { ipv4: l.source_prefix?.ipv4 ?? 32, ipv6: l.source_prefix?.ipv6 ?? 64 },
      })),
    },
    content: compileRouteContent(r.content, dir, files),
    rules: r.rules.map(compileChecked),
    dryRun: r.dry_run,
    access: compileAccess(r.access),
    onError: r.on_error,
    onOverload: r.on_overload,
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

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    // BlockList, Set and Map are frozen shallowly: their contents are not reachable as properties.
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
