// `portcullis policy diff OLD NEW`: what changed between two catalogs, and which decisions flip.
//
// 1. Structure: both files are validated as `serve` loads them, then their schema documents (defaults
//    filled in) are compared: routes, partners, issuers and plans by name, then field by field, lists
//    of named things (limits, API keys, rules) by name, lists of values (methods, scopes, CIDRs,
//    partners) as sets. Anything the schema gains later is compared the same way.
// 2. Decisions: sample requests are run through both catalogs with the real pipeline (harness.ts), and
//    every sample whose decision or code differs is a flip. Samples come from policy tests (each case
//    in a fresh harness, every repetition compared) and/or an audit log (replayed in order through one
//    harness per catalog, each line at its own time, so quotas accumulate as they did).
//
// An audit line records the request's method, host, path (no query), source address, request id and
// time, the decision, the partner and — for allowed requests — which credentials identified it (mtls
// principal, token application and user, API key id), but never a credential itself, nor the body.
// replayAudit() rebuilds what it can and says what it assumed; see docs/policy-testing.md.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { ALL_CODES } from '../errors.js';
import {
  applicationKey,
  type Catalog,
  type CatalogReference,
  type IssuerPolicy,
  type RoutePolicy,
} from '../policy/catalog.js';
import { loadCatalogFile } from '../policy/load.js';
import { matchRoute } from '../policy/match.js';
import { catalogSchema } from '../policy/schema.js';
import { DEFAULT_CLOCK } from './default-clock.js';
import {
  createHarness,
  type Harness,
  HarnessInputError,
  type HarnessResult,
  type SampleRequest,
  sampleCheckRequest,
  TestClock,
} from './harness.js';
import { CaseError, type FixtureFile, playCase, type RunOptions } from './policy-test.js';

// ---------------------------------------------------------------------------------------------
// Structure

export type FieldChange =
  | { readonly path: string; readonly kind: 'changed'; readonly old: unknown; readonly new: unknown }
  | { readonly path: string; readonly kind: 'added' | 'removed'; readonly value: unknown }
  | {
      readonly path: string;
      readonly kind: 'items';
      readonly added: readonly unknown[];
      readonly removed: readonly unknown[];
    }
  | {
      readonly path: string;
      readonly kind: 'reordered';
      readonly old: readonly string[];
      readonly new: readonly string[];
    };

export interface EntityChange {
  /** route, partner, issuer, plan (named things), or settings, access, revocations, catalog. */
  readonly kind: string;
  /** '' for the catalog-wide sections. */
  readonly name: string;
  readonly change: 'added' | 'removed' | 'changed';
  /** For a change: what changed inside. */
  readonly fields: readonly FieldChange[];
  /** For an addition or a removal: the whole thing. */
  readonly value?: unknown;
  /** Who else it touches, e.g. the partners on a changed plan. */
  readonly note?: string;
}

type Doc = Readonly<Record<string, unknown>>;

/** Top-level lists of named things, and the kind their entries are reported as. */
const NAMED_SECTIONS: Readonly<Record<string, string>> = {
  routes: 'route',
  partners: 'partner',
  issuers: 'issuer',
  plans: 'plan',
};

/** Structural differences between two catalog documents (schema output, defaults filled in). */
export function diffDocuments(oldDoc: Doc, newDoc: Doc): EntityChange[] {
  const changes: EntityChange[] = [];
  const catalogFields: FieldChange[] = [];
  for (const key of unionKeys(oldDoc, newDoc)) {
    const a = oldDoc[key];
    const b = newDoc[key];
    if (deepEqual(a, b)) continue;
    const kind = NAMED_SECTIONS[key] ?? (isNamedList(a, b) ? key.replace(/s$/, '') : undefined);
    if (kind !== undefined && isNamedList(a, b)) {
      changes.push(
        ...diffNamed(kind, (a as unknown[] | undefined) ?? [], (b as unknown[] | undefined) ?? []),
      );
      const order = reorder((a as unknown[] | undefined) ?? [], (b as unknown[] | undefined) ?? []);
      if (order) {
        changes.push({ kind: key, name: '', change: 'changed', fields: [{ path: 'order', ...order }] });
      }
    } else if (isObject(a) && isObject(b)) {
      const fields: FieldChange[] = [];
      diffValue('', a, b, fields);
      changes.push({ kind: key, name: '', change: 'changed', fields });
    } else {
      diffValue(key, a, b, catalogFields);
    }
  }
  if (catalogFields.length > 0)
    changes.push({ kind: 'catalog', name: '', change: 'changed', fields: catalogFields });
  return annotatePlans(changes, newDoc, oldDoc);
}

function diffNamed(kind: string, a: readonly unknown[], b: readonly unknown[]): EntityChange[] {
  const out: EntityChange[] = [];
  const before = byName(a);
  const after = byName(b);
  for (const [name, value] of before) {
    if (!after.has(name)) out.push({ kind, name, change: 'removed', fields: [], value });
  }
  for (const [name, value] of after) {
    const old = before.get(name);
    if (old === undefined) out.push({ kind, name, change: 'added', fields: [], value });
    else if (!deepEqual(old, value)) {
      const fields: FieldChange[] = [];
      diffValue('', old, value, fields);
      out.push({ kind, name, change: 'changed', fields });
    }
  }
  return out;
}

/**
 * The files the catalogs name (schemas, JWKS files), compared by the path written in the catalog:
 * added, removed, or changed — a JSON file as a JSON diff, anything else by its content hash.
 */
export function diffReferences(
  before: readonly CatalogReference[],
  after: readonly CatalogReference[],
): EntityChange[] {
  const key = (r: CatalogReference) => `${r.kind}\u0000${r.path}`;
  const old = new Map(before.map((r) => [key(r), r]));
  const now = new Map(after.map((r) => [key(r), r]));
  const out: EntityChange[] = [];
  const parsed = (r: CatalogReference): unknown => {
    try {
      return JSON.parse(r.text);
    } catch {
      return undefined;
    }
  };
  for (const [k, r] of old) {
    if (!now.has(k))
      out.push({ kind: r.kind, name: r.path, change: 'removed', fields: [], value: parsed(r) ?? r.text });
  }
  for (const [k, r] of now) {
    const was = old.get(k);
    if (!was) {
      out.push({ kind: r.kind, name: r.path, change: 'added', fields: [], value: parsed(r) ?? r.text });
      continue;
    }
    if (was.sha256 === r.sha256) continue;
    const a = parsed(was);
    const b = parsed(r);
    const fields: FieldChange[] = [];
    if (a !== undefined && b !== undefined) diffValue('', a, b, fields);
    if (fields.length === 0) {
      fields.push({
        path: '(content)',
        kind: 'changed',
        old: was.sha256 ? `sha256:${was.sha256.slice(0, 16)}` : '(unreadable)',
        new: r.sha256 ? `sha256:${r.sha256.slice(0, 16)}` : '(unreadable)',
      });
    }
    out.push({ kind: r.kind, name: r.path, change: 'changed', fields });
  }
  return out;
}

/** Partners on a changed plan are affected by it: say which. */
function annotatePlans(changes: EntityChange[], newDoc: Doc, oldDoc: Doc): EntityChange[] {
  const partnersOn = (doc: Doc, plan: string) =>
    ((doc.partners as { id: string; plan?: string }[] | undefined) ?? [])
      .filter((p) => p.plan === plan)
      .map((p) => p.id);
  return changes.map((c) => {
    if (c.kind !== 'plan' || c.change !== 'changed') return c;
    const ids = [...new Set([...partnersOn(oldDoc, c.name), ...partnersOn(newDoc, c.name)])];
    return ids.length > 0 ? { ...c, note: `partners on this plan: ${ids.join(', ')}` } : c;
  });
}

function diffValue(path: string, a: unknown, b: unknown, out: FieldChange[]): void {
  if (deepEqual(a, b)) return;
  if (a === undefined) {
    out.push({ path, kind: 'added', value: b });
    return;
  }
  if (b === undefined) {
    out.push({ path, kind: 'removed', value: a });
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (isNamedList(a, b)) {
      const before = byName(a);
      const after = byName(b);
      for (const [name, value] of before) {
        if (!after.has(name)) out.push({ path: `${path}[${name}]`, kind: 'removed', value });
      }
      for (const [name, value] of after) {
        const old = before.get(name);
        if (old === undefined) out.push({ path: `${path}[${name}]`, kind: 'added', value });
        else diffValue(`${path}[${name}]`, old, value, out);
      }
      const order = reorder(a, b);
      if (order) out.push({ path: `${path} order`, ...order });
      return;
    }
    const keyOf = (v: unknown) => JSON.stringify(v);
    const before = new Set(a.map(keyOf));
    const after = new Set(b.map(keyOf));
    const added = b.filter((v) => !before.has(keyOf(v)));
    const removed = a.filter((v) => !after.has(keyOf(v)));
    if (added.length > 0 || removed.length > 0) out.push({ path, kind: 'items', added, removed });
    else out.push({ path, kind: 'changed', old: a, new: b }); // same items, another order
    return;
  }
  if (isObject(a) && isObject(b)) {
    const keys = unionKeys(a, b);
    // Nothing in common ({prefix: …} → {pattern: …}): one change reads better than two.
    if (!keys.some((k) => k in a && k in b)) {
      out.push({ path, kind: 'changed', old: a, new: b });
      return;
    }
    for (const key of keys) diffValue(path ? `${path}.${key}` : key, a[key], b[key], out);
    return;
  }
  out.push({ path, kind: 'changed', old: a, new: b });
}

/** The new relative order of the names both lists have, when it differs (route order is match order). */
function reorder(
  a: readonly unknown[],
  b: readonly unknown[],
): { kind: 'reordered'; old: string[]; new: string[] } | null {
  const after = new Set(byName(b).keys());
  const before = new Set(byName(a).keys());
  const oldOrder = [...byName(a).keys()].filter((n) => after.has(n));
  const newOrder = [...byName(b).keys()].filter((n) => before.has(n));
  return deepEqual(oldOrder, newOrder) ? null : { kind: 'reordered', old: oldOrder, new: newOrder };
}

function nameOf(value: unknown): string | undefined {
  if (!isObject(value)) return undefined;
  // Partners and API keys have an id (and a display name); the rest have a name.
  if (typeof value.id === 'string') return value.id;
  if (typeof value.name === 'string') return value.name;
  return undefined;
}

function isNamedList(a: unknown, b: unknown): boolean {
  const lists = [a, b].filter((v) => v !== undefined);
  if (!lists.every(Array.isArray)) return false;
  const items = (lists as unknown[][]).flat();
  return items.length > 0 && items.every((v) => nameOf(v) !== undefined);
}

function byName(list: readonly unknown[]): Map<string, unknown> {
  return new Map(list.map((v) => [nameOf(v) ?? JSON.stringify(v), v]));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unionKeys(a: Doc, b: Doc): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])];
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  if (isObject(a) && isObject(b)) {
    const keys = unionKeys(a, b);
    return keys.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadedCatalog {
  readonly file: string;
  readonly catalog: Catalog;
  /** The schema document: defaults filled in, before compilation. */
  readonly document: Doc;
}

/** Loads a catalog as `serve` does (throws CatalogError), and its schema document for the diff. */
export async function loadForDiff(file: string): Promise<LoadedCatalog> {
  const catalog = await loadCatalogFile(file);
  const text = await readFile(file, 'utf8');
  const document = catalogSchema.parse(parseYaml(text)) as Doc;
  return { file, catalog, document };
}

// ---------------------------------------------------------------------------------------------
// Decisions

export interface Outcome {
  readonly decision: 'allow' | 'deny';
  readonly code: string;
  readonly status: number;
  readonly partner: string;
  readonly route: string;
  readonly reason: string;
  readonly dryRun: string | null;
}

export type FlipKind = 'allow→deny' | 'deny→allow' | 'code' | 'dry_run';

export interface Flip {
  /** Where the sample comes from: `orders.yaml › acme lists orders`, or `audit.log:12`. */
  readonly sample: string;
  readonly origin: 'test' | 'audit';
  /** The request in short: `GET api.example.com/v1/orders (token acme-orders-app)`. */
  readonly request: string;
  /** The partner it is reported under: the one either catalog identified, else the sample's. */
  readonly partner: string;
  readonly kind: FlipKind;
  readonly old: Outcome;
  readonly new: Outcome;
  /** Repeated samples (quotas): the first repetition that flips, how many do, out of how many. */
  readonly iteration: number;
  readonly flipped: number;
  readonly repeat: number;
  /** Repeated samples: the outcome of the LAST repetition under each catalog (what the case ends with). */
  readonly final: { readonly old: Outcome; readonly new: Outcome } | null;
  /** What the audit replay had to assume for this request. */
  readonly assumptions: readonly string[];
}

export interface NotCompared {
  readonly sample: string;
  readonly error: string;
}

export interface SkippedLines {
  readonly reason: string;
  /** 1-based line numbers. */
  readonly lines: readonly number[];
}

export interface AuditSummary {
  readonly file: string;
  readonly lines: number;
  /** Decision lines among them (the rest are other log lines). */
  readonly decisions: number;
  /** Decision lines turned into requests and replayed. */
  readonly replayed: number;
  readonly skipped: readonly SkippedLines[];
  /** Replayed lines whose decision under OLD differs from the logged one. */
  readonly disagreements: readonly { line: number; logged: string; replayed: string }[];
  /** Lines written by a catalog version other than OLD. */
  readonly otherVersions: number;
}

export interface FlipReport {
  readonly samples: { readonly tests: number; readonly audit: number };
  /** Enforced decision changes (allow↔deny, or another code): what the exit code reflects. */
  readonly flips: readonly Flip[];
  /** Same enforced decision, but a dry-run route or rule now records another would-deny. */
  readonly dryRunChanges: readonly Flip[];
  readonly notCompared: readonly NotCompared[];
  readonly audit: AuditSummary | null;
}

export function outcomeOf(result: HarnessResult): Outcome {
  const d = result.decision;
  return {
    decision: d.kind,
    code: d.code,
    status: d.kind === 'allow' ? 200 : (result.response.denied_response?.status.code ?? 403),
    partner: d.partner,
    route: d.route,
    reason: d.reason,
    dryRun: (d as { dryRun?: string }).dryRun ?? null,
  };
}

function flipKind(a: Outcome, b: Outcome): FlipKind | null {
  if (a.decision !== b.decision) return a.decision === 'allow' ? 'allow→deny' : 'deny→allow';
  if (a.code !== b.code) return 'code';
  if (a.dryRun !== b.dryRun) return 'dry_run';
  return null;
}

const ANONYMOUS = '(anonymous)';

/** Runs every case of the fixtures through both catalogs; compares every repetition. */
export async function compareTests(
  oldCatalog: Catalog,
  newCatalog: Catalog,
  files: readonly FixtureFile[],
  options: RunOptions,
): Promise<{ count: number; flips: Flip[]; notCompared: NotCompared[] }> {
  const flips: Flip[] = [];
  const notCompared: NotCompared[] = [];
  let count = 0;
  for (const fixture of files) {
    for (const testCase of fixture.cases) {
      count += 1;
      const sample = `${fixture.display} › ${testCase.name}`;
      const run = async (catalog: Catalog) => {
        const outcomes: Outcome[] = [];
        await playCase(catalog, testCase, options, (result) => outcomes.push(outcomeOf(result)));
        return outcomes;
      };
      let before: Outcome[];
      let after: Outcome[];
      try {
        before = await run(oldCatalog);
        after = await run(newCatalog);
      } catch (err: unknown) {
        if (!(err instanceof CaseError)) throw err;
        notCompared.push({ sample, error: err.message });
        continue;
      }
      const flip = firstFlip(before, after);
      if (!flip) continue;
      const request = describeSample(testCase.request);
      flips.push({
        sample,
        origin: 'test',
        request,
        partner: flip.old.partner || flip.new.partner || ANONYMOUS,
        ...flip,
        repeat: testCase.repeat,
        final:
          testCase.repeat > 1 && before.length > 0 && after.length > 0
            ? { old: before[before.length - 1] as Outcome, new: after[after.length - 1] as Outcome }
            : null,
        assumptions: [],
      });
    }
  }
  return { count, flips, notCompared };
}

function firstFlip(
  before: readonly Outcome[],
  after: readonly Outcome[],
): { kind: FlipKind; old: Outcome; new: Outcome; iteration: number; flipped: number } | null {
  // An enforced flip outranks a dry-run difference in another repetition.
  for (const enforcedOnly of [true, false]) {
    let first: { kind: FlipKind; old: Outcome; new: Outcome; iteration: number } | null = null;
    let flipped = 0;
    for (const [i, a] of before.entries()) {
      const b = after[i];
      const kind = b ? flipKind(a, b) : null;
      if (!b || !kind || (enforcedOnly && kind === 'dry_run')) continue;
      flipped += 1;
      first ??= { kind, old: a, new: b, iteration: i + 1 };
    }
    if (first) return { ...first, flipped };
  }
  return null;
}

/** `GET api.example.com/v1/orders (token acme-orders-app)` */
export function describeSample(r: Omit<SampleRequest, 'requestId'>): string {
  const method = r.method ?? (r.body ? 'POST' : 'GET');
  const target = r.url.replace(/^https?:\/\//, '');
  const who: string[] = [];
  if (r.principal) who.push(`mtls ${r.principal}`);
  else if (r.certificate) who.push('certificate');
  if (typeof r.token === 'string') who.push('signed token');
  else if (r.token) {
    const app = r.token.client_id ?? r.token.azp;
    who.push(`token ${typeof app === 'string' ? app : '(no application)'}`);
  }
  if (typeof r.apiKey === 'string') who.push('API key');
  else if (r.apiKey) who.push(`API key ${r.apiKey.id}`);
  if (r.route) who.push(`route ${r.route}`);
  if (r.source) who.push(`from ${r.source}`);
  return `${method} ${target}${who.length > 0 ? ` (${who.join(', ')})` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// Audit log replay

/** One replayable request rebuilt from an audit line. */
export interface AuditSample {
  readonly line: number;
  readonly timeMs: number;
  readonly request: SampleRequest;
  readonly logged: { readonly decision: string; readonly code: string; readonly partner: string };
  readonly assumptions: readonly string[];
}

/** Codes decided while a credential was being verified: the credential is not in the log. */
const CREDENTIAL_FAILURES = new Set<string>([
  'credentials_ambiguous',
  'token_in_query',
  'token_malformed',
  'token_signature_invalid',
  'token_key_unknown',
  'token_algorithm_not_allowed',
  'token_expired',
  'token_not_yet_valid',
  'token_lifetime_invalid',
  'token_issuer_invalid',
  'token_audience_invalid',
  'token_claims_invalid',
  'token_revoked',
  'certificate_mismatch',
  'api_key_invalid',
  'api_key_expired',
  'api_key_revoked',
  'partner_unknown',
  'partner_mismatch',
]);
/** Infrastructure, not policy: a replay cannot recreate the outage. */
const FAILURES = new Set<string>([
  'internal_error',
  'deadline_exceeded',
  'dependency_unavailable',
  'token_keys_unavailable',
  'identity_unavailable',
  'quota_unavailable',
  'overloaded',
  'allowed_on_error',
]);
/** Decided before any credential was read. */
const BEFORE_IDENTIFY = new Set<string>(['route_not_found', 'method_not_allowed', 'credentials_missing']);
/** The edge refused the CheckRequest itself; the log has no usable request. */
const UNREADABLE = new Set<string>(['request_malformed', 'request_header_invalid']);

const REDACTED = '[redacted]';

export interface ParsedAudit {
  readonly samples: AuditSample[];
  readonly lines: number;
  readonly decisions: number;
  readonly skipped: SkippedLines[];
  readonly otherVersions: number;
}

/**
 * Rebuilds requests from audit lines (JSON, one per line, as `serve` writes them), judged against
 * OLD: an allowed line names its credentials; a line denied after identification names only the
 * partner, whose credentials in OLD stand in for the real ones (an assumption, said per line).
 */
export function parseAuditLog(text: string, old: Catalog): ParsedAudit {
  const samples: AuditSample[] = [];
  const skipped = new Map<string, number[]>();
  const skip = (reason: string, line: number) => {
    const lines = skipped.get(reason);
    if (lines) lines.push(line);
    else skipped.set(reason, [line]);
  };
  let otherVersions = 0;
  let decisions = 0;
  let lastTime = Date.parse(DEFAULT_CLOCK);
  const all = text.split('\n');
  for (const [index, raw] of all.entries()) {
    const line = index + 1;
    if (raw.trim() === '') continue;
    let entry: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (!isObject(parsed)) throw new Error('not an object');
      entry = parsed;
    } catch {
      skip('not a JSON object', line);
      continue;
    }
    if (entry.msg !== 'decision' && entry.decision_id === undefined) continue; // another log line
    decisions += 1;
    const str = (key: string) => (typeof entry[key] === 'string' ? (entry[key] as string) : '');
    const code = str('code');
    const partner = str('partner');
    const routeName = str('route');
    const time = Date.parse(str('time'));
    if (Number.isFinite(time)) lastTime = time;
    if (str('policy_version') && str('policy_version') !== old.version) otherVersions += 1;
    if (!(ALL_CODES as readonly string[]).includes(code)) {
      skip('no known decision code', line);
      continue;
    }
    if (UNREADABLE.has(code) || !str('method') || !str('path').startsWith('/')) {
      skip('the CheckRequest could not be read: no request in the line', line);
      continue;
    }
    if (FAILURES.has(code)) {
      skip('an infrastructure failure (on_error), not a policy decision', line);
      continue;
    }
    if (CREDENTIAL_FAILURES.has(code)) {
      skip('refused while verifying a credential, which the log does not hold', line);
      continue;
    }

    const assumptions: string[] = [];
    const method = str('method');
    const host = str('host');
    const path = str('path');
    const headers: Record<string, string> = {};
    if (isObject(entry.headers)) {
      for (const [name, value] of Object.entries(entry.headers)) {
        if (typeof value === 'string' && value !== REDACTED && !name.startsWith(':')) headers[name] = value;
      }
    }
    if (typeof entry.body_bytes === 'number' && entry.body_bytes > 0) {
      assumptions.push(`body of ${entry.body_bytes} bytes not logged: replayed without`);
    }
    const oldRoute = routeName ? old.routesByName.get(routeName) : undefined;
    let routeExtension: string | undefined;
    if (oldRoute) {
      const found = matchRoute(old, undefined, host, path, method);
      if (found.kind !== 'route' || found.route.name !== routeName) {
        routeExtension = routeName;
        assumptions.push(`Envoy named the route (context extension route=${routeName})`);
      }
    }
    const request: {
      -readonly [K in keyof SampleRequest]: SampleRequest[K];
    } = {
      method,
      url: host ? `https://${host}${path}` : path,
      headers,
      route: routeExtension,
      source: str('source_ip'),
      requestId: str('request_id') || `audit-line-${line}`,
    };

    let identity: Identity | string;
    if (code === 'allowed' || str('decision') === 'allow') {
      identity = fromReason(str('reason'), old, oldRoute, assumptions);
    } else if (BEFORE_IDENTIFY.has(code) || partner === '') {
      if (code !== 'credentials_missing') assumptions.push('credentials not logged: replayed without any');
      identity = {};
    } else if (!oldRoute) {
      identity = `route ${routeName || '(none)'} is not in OLD`;
    } else {
      identity = approximate(partner, code, str('reason'), old, oldRoute, assumptions);
    }
    if (typeof identity === 'string') {
      skip(identity, line);
      continue;
    }
    samples.push({
      line,
      timeMs: Number.isFinite(time) ? time : lastTime,
      request: { ...request, ...identity },
      logged: { decision: str('decision'), code, partner },
      assumptions,
    });
  }
  return {
    samples,
    lines: all.filter((l) => l.trim() !== '').length,
    decisions,
    skipped: [...skipped].map(([reason, lines]) => ({ reason, lines })),
    otherVersions,
  };
}

type Identity = Pick<SampleRequest, 'principal' | 'token' | 'apiKey'>;

/** From an allowed line's reason: `mtls P; jwt app=A sub=S; api_key K` (then quota notes). */
function fromReason(
  reason: string,
  old: Catalog,
  route: RoutePolicy | undefined,
  assumptions: string[],
): Identity | string {
  const identity: { -readonly [K in keyof Identity]: Identity[K] } = {};
  for (const part of reason.split('; ')) {
    let m = /^mtls (\S+)$/.exec(part);
    if (m?.[1]) identity.principal = m[1];
    m = /^jwt app=(\S*) sub=(.*)$/.exec(part);
    if (m) {
      const token = tokenFor(m[1] ?? '', m[2] ?? '', old, route, null, assumptions);
      if (typeof token === 'string') return token;
      identity.token = token;
    }
    m = /^api_key (\S+)$/.exec(part);
    if (m?.[1]) identity.apiKey = { id: m[1] };
  }
  return identity;
}

/** A token's claims for an application, issued by the issuer OLD maps it from. */
function tokenFor(
  app: string,
  sub: string,
  old: Catalog,
  route: RoutePolicy | undefined,
  scopes: readonly string[] | null,
  assumptions: string[],
): Record<string, unknown> | string {
  if (route?.identity.bindCertificate) return 'a certificate-bound token: the certificate is not logged';
  const candidates = old.issuers.filter(
    (i) => !route || route.identity.issuers.size === 0 || route.identity.issuers.has(i.name),
  );
  const issuer: IssuerPolicy | undefined =
    candidates.find((i) => old.partnersByApplication.has(applicationKey(i.name, app))) ?? candidates[0];
  if (!issuer) return 'a token, but OLD has no issuer for it';
  const claims: Record<string, unknown> = {
    iss: issuer.name,
    [issuer.applicationClaims[0] ?? 'client_id']: app,
  };
  if (sub) claims[issuer.userClaim] = sub;
  const granted = scopes ?? route?.identity.scopes ?? [];
  if (granted.length > 0) {
    claims.scope = granted.join(' ');
    assumptions.push(
      `token scopes not logged: assumed ${granted.join(' ')} (what route ${route?.name} required)`,
    );
  }
  if (route?.identity.maxAuthAgeSeconds !== undefined) {
    claims.auth_time = 'now';
    assumptions.push('token auth_time not logged: assumed just now');
  }
  const acr = route?.identity.acrValues[0];
  if (acr !== undefined) {
    claims.acr = acr;
    assumptions.push(`token acr not logged: assumed ${acr}`);
  }
  return claims;
}

/**
 * A line denied after identification names the partner but not how it was identified: stand in the
 * partner's own credentials in OLD, of the kinds OLD's route asks for.
 */
function approximate(
  partnerId: string,
  code: string,
  reason: string,
  old: Catalog,
  route: RoutePolicy,
  assumptions: string[],
): Identity | string {
  const partner = old.partners.get(partnerId);
  if (!partner) return `partner ${partnerId} is not in OLD`;
  const principal = [...old.partnersByPrincipal].find(([, p]) => p.id === partnerId)?.[0];
  const application = [...old.partnersByApplication]
    .find(([, p]) => p.id === partnerId)?.[0]
    .split('\u0000')
    .at(-1);
  const keyId = [...old.apiKeysByHash.values()].find((k) => k.partner.id === partnerId)?.id;
  const available = { mtls: principal, jwt: application, api_key: keyId } as const;
  const accepted = (['mtls', 'jwt', 'api_key'] as const).filter((k) => route.identity.accepted.has(k));
  const kinds: readonly ('mtls' | 'jwt' | 'api_key')[] =
    route.identity.allOf.length > 0
      ? route.identity.allOf
      : accepted.filter((k) => available[k] !== undefined).slice(0, 1);
  if (kinds.length === 0 || kinds.some((k) => available[k] === undefined)) {
    return `partner credentials not logged, and OLD gives the partner none route ${route.name} accepts`;
  }
  const identity: { -readonly [K in keyof Identity]: Identity[K] } = {};
  const used: string[] = [];
  for (const kind of kinds) {
    if (kind === 'mtls') {
      identity.principal = principal;
      used.push(`mtls ${principal}`);
    } else if (kind === 'api_key' && keyId) {
      identity.apiKey = { id: keyId };
      used.push(`API key ${keyId}`);
    } else if (kind === 'jwt' && application) {
      // insufficient_scope says which scopes were missing: the token had the others.
      const missing = /^missing scopes: (.*)$/.exec(reason)?.[1]?.split(' ') ?? null;
      const scopes =
        code === 'insufficient_scope' ? route.identity.scopes.filter((s) => !missing?.includes(s)) : null;
      const token = tokenFor(application, '', old, route, scopes, assumptions);
      if (typeof token === 'string') return token;
      identity.token = token;
      used.push(`token ${application}`);
    }
  }
  assumptions.unshift(
    `credentials not logged: partner ${partnerId} stood in by its ${used.join(' and ')} in OLD`,
  );
  return identity;
}

/** Replays the samples in log order through one harness per catalog, each at its line's time. */
export async function replayAudit(
  parsed: ParsedAudit,
  file: string,
  oldCatalog: Catalog,
  newCatalog: Catalog,
  options: RunOptions,
): Promise<{ summary: AuditSummary; flips: Flip[]; notCompared: NotCompared[] }> {
  const clock = new TestClock(Date.parse(DEFAULT_CLOCK));
  const before = createHarness(oldCatalog, { clock, apiKeyPepper: options.apiKeyPepper });
  const after = createHarness(newCatalog, { clock, apiKeyPepper: options.apiKeyPepper });
  const flips: Flip[] = [];
  const notCompared: NotCompared[] = [];
  const disagreements: { line: number; logged: string; replayed: string }[] = [];
  const run = async (harness: Harness, sample: AuditSample): Promise<Outcome | string> => {
    try {
      return outcomeOf(await harness.check(await sampleCheckRequest(harness, sample.request)));
    } catch (err: unknown) {
      if (err instanceof HarnessInputError) return err.message;
      throw err;
    }
  };
  try {
    for (const sample of parsed.samples) {
      clock.set(sample.timeMs);
      const a = await run(before, sample);
      const b = await run(after, sample);
      const name = `${file}:${sample.line}`;
      if (typeof a === 'string' || typeof b === 'string') {
        notCompared.push({ sample: name, error: typeof a === 'string' ? `OLD: ${a}` : `NEW: ${b}` });
        continue;
      }
      if (a.code !== sample.logged.code) {
        disagreements.push({ line: sample.line, logged: sample.logged.code, replayed: a.code });
      }
      const kind = flipKind(a, b);
      if (!kind) continue;
      flips.push({
        sample: name,
        origin: 'audit',
        request: describeSample(sample.request),
        partner: a.partner || b.partner || sample.logged.partner || ANONYMOUS,
        kind,
        old: a,
        new: b,
        iteration: 1,
        flipped: 1,
        repeat: 1,
        final: null,
        assumptions: sample.assumptions,
      });
    }
  } finally {
    await before.close();
    await after.close();
  }
  return {
    summary: {
      file,
      lines: parsed.lines,
      decisions: parsed.decisions,
      replayed: parsed.samples.length,
      skipped: parsed.skipped,
      disagreements,
      otherVersions: parsed.otherVersions,
    },
    flips,
    notCompared,
  };
}

/** Flips grouped by partner (anonymous last), in sample order within each. */
export function byPartner(flips: readonly Flip[]): Map<string, Flip[]> {
  const groups = new Map<string, Flip[]>();
  for (const flip of flips) {
    const list = groups.get(flip.partner);
    if (list) list.push(flip);
    else groups.set(flip.partner, [flip]);
  }
  return new Map(
    [...groups].sort(([a], [b]) => (a === ANONYMOUS ? 1 : b === ANONYMOUS ? -1 : a.localeCompare(b))),
  );
}

export interface DecisionInputs {
  /** Policy test fixtures whose requests are the samples. */
  readonly tests?: readonly FixtureFile[];
  /** An audit log: its path (for reports) and its text. */
  readonly audit?: { readonly file: string; readonly text: string };
}

/** Every sample through both catalogs: the flips, the dry-run changes, what could not be compared. */
export async function compareDecisions(
  oldCatalog: Catalog,
  newCatalog: Catalog,
  inputs: DecisionInputs,
  options: RunOptions,
): Promise<FlipReport> {
  const all: Flip[] = [];
  const notCompared: NotCompared[] = [];
  let tests = 0;
  let audit: AuditSummary | null = null;
  if (inputs.tests) {
    const result = await compareTests(oldCatalog, newCatalog, inputs.tests, options);
    tests = result.count;
    all.push(...result.flips);
    notCompared.push(...result.notCompared);
  }
  if (inputs.audit) {
    const parsed = parseAuditLog(inputs.audit.text, oldCatalog);
    const result = await replayAudit(parsed, inputs.audit.file, oldCatalog, newCatalog, options);
    audit = result.summary;
    all.push(...result.flips);
    notCompared.push(...result.notCompared);
  }
  return {
    samples: { tests, audit: audit?.replayed ?? 0 },
    flips: all.filter((f) => f.kind !== 'dry_run'),
    dryRunChanges: all.filter((f) => f.kind === 'dry_run'),
    notCompared,
    audit,
  };
}
