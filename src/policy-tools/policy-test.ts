// `portcullis policy test`: YAML fixtures of requests with the decisions they must get, run through the
// real pipeline (harness.ts). This module loads and validates fixtures (every problem with
// FILE:LINE:COLUMN, like the catalog loader) and runs them; cli/policy.ts renders the results.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { ALL_CODES } from '../errors.js';
import type { Catalog } from '../policy/catalog.js';
import { type CatalogIssue, type DocPath, parseYaml } from '../policy/yaml-issues.js';
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

export const MAX_REPEAT = 100_000;

const instant = z.iso.datetime({ offset: true });
const expectedHeaders = z.record(z.string().min(1), z.string().nullable());

const requestSchema = z.strictObject({
  method: z
    .string()
    .regex(/^[A-Z]+$/, 'an upper-case HTTP method')
    .optional(),
  url: z.string().min(1),
  headers: z.record(z.string().min(1), z.string()).default({}),
  /** The `route` context extension Envoy would send. */
  route: z.string().min(1).optional(),
  /** A signed JWT, or the claims of one. */
  token: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional(),
  /** A real API key, or `{id: KEY_ID}` of the catalog (no secret needed). */
  api_key: z.union([z.string().min(1), z.strictObject({ id: z.string().min(1) })]).optional(),
  principal: z.string().min(1).optional(),
  /** PEM file, relative to the fixture file. */
  certificate: z.string().min(1).optional(),
  body: z
    .union([z.string(), z.strictObject({ file: z.string().min(1) }), z.strictObject({ json: z.unknown() })])
    .optional(),
  source: z.string().optional(),
});

const expectSchema = z.strictObject({
  decision: z.enum(['allow', 'deny']).optional(),
  code: z
    .string()
    .refine((c) => (ALL_CODES as readonly string[]).includes(c), {
      message: 'unknown decision code (see docs/errors.md)',
    })
    .optional(),
  /** HTTP status the partner gets; 200 for an allow (Envoy forwards the request). */
  status: z.number().int().min(100).max(599).optional(),
  partner: z.string().optional(),
  route: z.string().optional(),
  /** The problem's `detail`, exactly. */
  detail: z.string().optional(),
  /** The denial a dry-run route or rule recorded without enforcing it; null = none. */
  dry_run: z.string().nullable().optional(),
  /** Headers set for the upstream; null = must not be set. */
  upstream_headers: expectedHeaders.optional(),
  /** Headers the partner receives: the denied response's, or those added to the upstream's answer. */
  response_headers: expectedHeaders.optional(),
  /** Short for response_headers. */
  headers: expectedHeaders.optional(),
  /** Request headers removed before the upstream (each of them; others may be removed too). */
  headers_removed: z.array(z.string().min(1)).optional(),
  /** Query parameters removed before the upstream. */
  query_removed: z.array(z.string().min(1)).optional(),
});

const caseSchema = z.strictObject({
  name: z.string().min(1),
  request: requestSchema,
  /** Send the request this many times (quotas); `expect` applies to the last one. */
  repeat: z.number().int().min(1).max(MAX_REPEAT).default(1),
  clock: instant.optional(),
  expect: expectSchema,
});

const fileSchema = z.strictObject({
  name: z.string().min(1).optional(),
  clock: instant.optional(),
  cases: z.array(caseSchema).min(1, 'a fixture file needs at least one case'),
});

export type Expectation = z.output<typeof expectSchema>;

export interface FixtureCase {
  readonly name: string;
  /** 1-based line of the case in its file. */
  readonly line: number;
  /** The request, without its request id (given per repetition). */
  readonly request: Omit<SampleRequest, 'requestId'>;
  /** The fixture's x-request-id, or `FILE:INDEX`. */
  readonly requestId: string;
  readonly repeat: number;
  readonly clockMs: number;
  readonly expect: Expectation;
}

export interface FixtureFile {
  /** The path as found (DIR joined with the file's name). */
  readonly file: string;
  /** The path relative to the directory tested, for reports: `orders.yaml`. */
  readonly display: string;
  readonly name: string;
  readonly cases: readonly FixtureCase[];
}

/** `*.yaml` and `*.yml` under `target` (recursively, sorted), or `target` itself when it is a file. */
export function findFixtureFiles(target: string): string[] {
  if (!existsSync(target)) throw new HarnessInputError(`${target}: no such file or directory`);
  if (statSync(target).isFile()) return [target];
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.ya?ml$/.test(entry.name)) found.push(path);
    }
  };
  walk(target);
  return found;
}

/** Loads and validates fixture files. Every problem of every file is reported, none is thrown. */
export function loadFixtures(
  files: readonly string[],
  root: string,
): { files: FixtureFile[]; issues: CatalogIssue[] } {
  const loaded: FixtureFile[] = [];
  const issues: CatalogIssue[] = [];
  for (const file of files) {
    const result = loadFixtureFile(file, root);
    if ('issues' in result) issues.push(...result.issues);
    else loaded.push(result.fixture);
  }
  return { files: loaded, issues };
}

function loadFixtureFile(file: string, root: string): { fixture: FixtureFile } | { issues: CatalogIssue[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err: unknown) {
    const message = err instanceof Error ? err.message : String(err);
    return { issues: [{ file, line: 0, column: 0, path: '(file)', message: `cannot read: ${message}` }] };
  }
  const parsed = parseYaml(text, file, fileSchema, unionMessage);
  if (!parsed.ok) return { issues: parsed.issues };
  const { locate } = parsed;

  const dir = dirname(file);
  const display = relative(root, file) || basename(file);
  const problems: CatalogIssue[] = [];
  const fileClock = parsed.data.clock ?? DEFAULT_CLOCK;
  const names = new Set<string>();
  const cases: FixtureCase[] = [];
  parsed.data.cases.forEach((c, i) => {
    const at = (path: DocPath, message: string) => problems.push(locate(['cases', i, ...path], message));
    if (names.has(c.name)) at(['name'], `duplicate case name "${c.name}"`);
    names.add(c.name);
    if (Object.keys(c.expect).length === 0) {
      at(['expect'], 'expect needs at least one of decision, code, status, headers, …');
    }
    if (c.expect.headers !== undefined && c.expect.response_headers !== undefined) {
      at(['expect', 'headers'], 'give headers or response_headers (the same thing), not both');
    }
    const r = c.request;
    const headerNames = Object.keys(r.headers).map((h) => h.toLowerCase());
    if (r.token !== undefined && headerNames.includes('authorization')) {
      at(['request', 'token'], 'give token or headers.authorization, not both');
    }
    if (r.source !== undefined && r.source !== '' && isIP(r.source) === 0) {
      at(['request', 'source'], `"${r.source}" is not an IP address`);
    }
    if (!/^https?:\/\//.test(r.url) && !r.url.startsWith('/')) {
      at(['request', 'url'], 'expected https://host/path or a path starting with "/" (with a host header)');
    }
    const certificate = r.certificate === undefined ? undefined : resolve(dir, r.certificate);
    if (certificate !== undefined && !existsSync(certificate)) {
      at(['request', 'certificate'], `no such file: ${r.certificate} (paths are relative to this file)`);
    }
    let body: SampleRequest['body'];
    const headers = { ...r.headers };
    if (typeof r.body === 'string') {
      if (r.body.startsWith('@')) at(['request', 'body'], 'a body starting with "@" must come from a file');
      body = { text: r.body };
    } else if (r.body && 'file' in r.body) {
      body = { file: resolve(dir, r.body.file) };
      if (!existsSync(body.file)) {
        at(['request', 'body', 'file'], `no such file: ${r.body.file} (paths are relative to this file)`);
      }
    } else if (r.body && 'json' in r.body) {
      body = { text: JSON.stringify(r.body.json) };
      if (!headerNames.includes('content-type')) headers['content-type'] = 'application/json';
    }
    const requestIdHeader = Object.keys(headers).find((h) => h.toLowerCase() === 'x-request-id');
    const requestId =
      requestIdHeader === undefined ? `${display}:${i + 1}` : (headers[requestIdHeader] ?? '');
    if (requestIdHeader !== undefined) delete headers[requestIdHeader];
    cases.push({
      name: c.name,
      line: locate(['cases', i], '').line,
      request: {
        method: r.method,
        url: r.url,
        headers,
        route: r.route,
        token: r.token,
        apiKey: r.api_key,
        principal: r.principal,
        certificate,
        body,
        source: r.source,
      },
      requestId,
      repeat: c.repeat,
      clockMs: Date.parse(c.clock ?? fileClock),
      expect: c.expect,
    });
  });
  if (problems.length > 0) return { issues: problems };
  return {
    fixture: { file, display, name: parsed.data.name ?? basename(file).replace(/\.ya?ml$/, ''), cases },
  };
}

// ---------------------------------------------------------------------------------------------
// Running

/** What a request got, in the terms a fixture states expectations in. */
export interface Actual {
  readonly decision: 'allow' | 'deny';
  readonly code: string;
  readonly status: number;
  readonly route: string;
  readonly partner: string;
  /** Internal reason (audit log): shown on failures, never sent to the partner. */
  readonly reason: string;
  readonly detail: string;
  readonly dryRun: string | null;
  readonly upstreamHeaders: Readonly<Record<string, string>>;
  /** What the partner receives: the denied response's headers, or those added to the upstream's answer. */
  readonly responseHeaders: Readonly<Record<string, string>>;
  readonly headersRemoved: readonly string[];
  readonly queryRemoved: readonly string[];
}

export interface Mismatch {
  readonly field: string;
  readonly expected: string;
  readonly actual: string;
  /** One line for a reader: `expected code allowed, got insufficient_scope (reason: …)`. */
  readonly message: string;
}

export interface CaseResult {
  readonly file: string;
  readonly display: string;
  readonly name: string;
  readonly line: number;
  readonly passed: boolean;
  /** The repetition `actual` comes from (the last one, or the one that could not run). */
  readonly iteration: number;
  readonly repeat: number;
  readonly mismatches: readonly Mismatch[];
  /** null when the request could not be built or run (`error` says why). */
  readonly actual: Actual | null;
  readonly error?: string;
  /** A likely cause worth saying (e.g. no API key pepper for a real key). */
  readonly hint?: string;
}

export interface RunOptions {
  readonly apiKeyPepper: Buffer | null;
}

export function actualOf(result: HarnessResult): Actual {
  const { decision, response } = result;
  const headers = (list: readonly { header: { key: string; value: string } }[] | undefined) =>
    Object.fromEntries((list ?? []).map((h) => [h.header.key, h.header.value]));
  const ok = response.ok_response;
  const denied = response.denied_response;
  return {
    decision: decision.kind,
    code: decision.code,
    status: decision.kind === 'allow' ? 200 : (denied?.status.code ?? 403),
    route: decision.route,
    partner: decision.partner,
    reason: decision.reason,
    detail: decision.kind === 'deny' ? decision.detail : '',
    dryRun: (decision as { dryRun?: string }).dryRun ?? null,
    upstreamHeaders: headers(ok?.headers),
    responseHeaders: headers(ok ? ok.response_headers_to_add : denied?.headers),
    headersRemoved: ok?.headers_to_remove ?? [],
    queryRemoved: ok?.query_parameters_to_remove ?? [],
  };
}

/**
 * Sends a case's request `repeat` times through one fresh harness (fresh quotas) at the case's clock.
 * Each repetition has its own x-request-id (`ID-2`, …), so quota idempotency does not fold them.
 * `each` sees every result; the last is returned.
 */
export async function playCase(
  catalog: Catalog,
  testCase: FixtureCase,
  options: RunOptions,
  each?: (result: HarnessResult, iteration: number) => void,
): Promise<HarnessResult> {
  const harness = createHarness(catalog, {
    clock: new TestClock(testCase.clockMs),
    apiKeyPepper: options.apiKeyPepper,
  });
  try {
    return await playOn(harness, testCase, each);
  } finally {
    await harness.close();
  }
}

async function playOn(
  harness: Harness,
  testCase: FixtureCase,
  each?: (result: HarnessResult, iteration: number) => void,
): Promise<HarnessResult> {
  let last: HarnessResult | undefined;
  // One request object for every repetition but its request id (a token is signed once).
  const sample = { ...testCase.request, token: await tokenOnce(harness, testCase.request.token) };
  for (let i = 1; i <= testCase.repeat; i++) {
    const requestId = testCase.repeat === 1 ? testCase.requestId : `${testCase.requestId}-${i}`;
    try {
      last = await harness.check(await sampleCheckRequest(harness, { ...sample, requestId }));
    } catch (err: unknown) {
      if (err instanceof HarnessInputError) throw new CaseError(err.message, i);
      throw err;
    }
    each?.(last, i);
  }
  return last as HarnessResult;
}

async function tokenOnce(harness: Harness, token: SampleRequest['token']): Promise<string | undefined> {
  try {
    return token === undefined || typeof token === 'string' ? token : await harness.token(token);
  } catch (err: unknown) {
    if (err instanceof HarnessInputError) throw new CaseError(err.message, 1);
    throw err;
  }
}

/** A case that cannot run: its request cannot be built against this catalog. */
export class CaseError extends Error {
  override name = 'CaseError';
  constructor(
    message: string,
    readonly iteration: number,
  ) {
    super(message);
  }
}

export async function runCase(
  catalog: Catalog,
  fixture: FixtureFile,
  testCase: FixtureCase,
  options: RunOptions,
): Promise<CaseResult> {
  const base = {
    file: fixture.file,
    display: fixture.display,
    name: testCase.name,
    line: testCase.line,
    repeat: testCase.repeat,
  };
  let result: HarnessResult;
  try {
    result = await playCase(catalog, testCase, options);
  } catch (err: unknown) {
    if (!(err instanceof CaseError)) throw err;
    return {
      ...base,
      passed: false,
      iteration: err.iteration,
      mismatches: [],
      actual: null,
      error: err.message,
    };
  }
  const actual = actualOf(result);
  const mismatches = compare(testCase.expect, actual);
  const hint =
    mismatches.length > 0 && actual.code === 'api_key_invalid' && typeof testCase.request.apiKey === 'string'
      ? options.apiKeyPepper
        ? undefined
        : 'no API key pepper is configured: pass --pepper-file, or name the key by id (api_key: {id: …})'
      : undefined;
  return {
    ...base,
    passed: mismatches.length === 0,
    iteration: testCase.repeat,
    mismatches,
    actual,
    ...(hint ? { hint } : {}),
  };
}

export interface TestReport {
  readonly results: readonly CaseResult[];
  readonly passed: number;
  readonly failed: number;
}

export async function runFixtures(
  catalog: Catalog,
  files: readonly FixtureFile[],
  options: RunOptions,
  onResult?: (result: CaseResult) => void,
): Promise<TestReport> {
  const results: CaseResult[] = [];
  for (const fixture of files) {
    for (const testCase of fixture.cases) {
      const result = await runCase(catalog, fixture, testCase, options);
      results.push(result);
      onResult?.(result);
    }
  }
  const passed = results.filter((r) => r.passed).length;
  return { results, passed, failed: results.length - passed };
}

/** Every expectation that does not hold, in the order a reader checks them. */
export function compare(expect: Expectation, actual: Actual): Mismatch[] {
  const out: Mismatch[] = [];
  const add = (field: string, expected: string, got: string, message: string) =>
    out.push({ field, expected, actual: got, message });
  // Decision, code and status read as one verdict: one message for all that differ.
  const verdict = (['decision', 'code', 'status'] as const).filter((k) => expect[k] !== undefined);
  const differs = verdict.filter((k) => expect[k] !== actual[k]);
  if (differs.length > 0) {
    const reason = actual.reason ? ` (reason: ${actual.reason})` : '';
    const only = verdict.length === 1 ? verdict[0] : undefined;
    // What was expected, in the fixture's terms; what came, with what explains it.
    const wanted =
      only === 'status'
        ? `status ${expect.status}`
        : only === 'code'
          ? `code ${expect.code}`
          : only === 'decision'
            ? `decision ${expect.decision}`
            : [expect.decision, expect.code, expect.status === undefined ? undefined : `(${expect.status})`]
                .filter((p) => p !== undefined)
                .join(' ');
    const got =
      only === 'status'
        ? `${actual.status} (${actual.code})`
        : only === 'code'
          ? actual.code
          : `${actual.decision} ${actual.code} (${actual.status})`;
    const message = `expected ${wanted}, got ${got}${reason}`;
    for (const k of differs) add(k, String(expect[k]), String(actual[k]), message);
  }
  for (const key of ['partner', 'route', 'detail'] as const) {
    const want = expect[key];
    if (want !== undefined && want !== actual[key]) {
      const text = (v: string) => (key === 'detail' ? JSON.stringify(v) : show(v));
      add(key, want, actual[key], `expected ${key} ${text(want)}, got ${text(actual[key])}`);
    }
  }
  if (expect.dry_run !== undefined && expect.dry_run !== actual.dryRun) {
    add(
      'dry_run',
      String(expect.dry_run),
      String(actual.dryRun),
      `expected dry run ${expect.dry_run ?? '(none)'}, got ${actual.dryRun ?? '(none)'}`,
    );
  }
  headerChecks(out, 'upstream header', expect.upstream_headers, actual.upstreamHeaders);
  headerChecks(out, 'response header', expect.response_headers ?? expect.headers, actual.responseHeaders);
  for (const [field, wanted, removed, what] of [
    ['headers_removed', expect.headers_removed, actual.headersRemoved, 'header'],
    ['query_removed', expect.query_removed, actual.queryRemoved, 'query parameter'],
  ] as const) {
    for (const name of wanted ?? []) {
      const lower = what === 'header' ? name.toLowerCase() : name;
      if (!removed.includes(lower)) {
        add(
          field,
          lower,
          removed.join(', '),
          `expected ${what} ${lower} removed before the upstream, it is not (removed: ${removed.join(', ') || 'none'})`,
        );
      }
    }
  }
  return out;
}

function headerChecks(
  out: Mismatch[],
  what: string,
  wanted: Readonly<Record<string, string | null>> | undefined,
  got: Readonly<Record<string, string>>,
): void {
  for (const [rawName, value] of Object.entries(wanted ?? {})) {
    const name = rawName.toLowerCase();
    const actual = got[name];
    if (value === null ? actual === undefined : actual === value) continue;
    const expected = value === null ? `${name} not set` : `${name}: ${value}`;
    const seen = actual === undefined ? `${name} not set` : `${name}: ${actual}`;
    out.push({
      field: `${what.replace(' ', '_')}s.${name}`,
      expected: value ?? '(not set)',
      actual: actual ?? '(not set)',
      message: `expected ${what} ${expected}, got ${seen}`,
    });
  }
}

const show = (text: string) => (text === '' ? '(none)' : text);

// ---------------------------------------------------------------------------------------------
// Problem positions (the catalog loader's approach: zod paths → YAML nodes → line and column)

function unionMessage(path: DocPath): string {
  switch (path.at(-1)) {
    case 'body':
      return 'must be a string, {file: PATH} or {json: VALUE}';
    case 'token':
      return 'must be a signed token (a string) or a mapping of claims';
    case 'api_key':
      return 'must be an API key (a string) or {id: KEY_ID}';
    default:
      return 'does not match any allowed form';
  }
}
