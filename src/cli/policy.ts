// `portcullis policy test` and `portcullis policy diff`: argument parsing, help and rendering.
// The work is in policy-tools/policy-test.ts, policy-tools/diff.ts and policy-tools/harness.ts.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { stringify as stringifyYaml } from 'yaml';
import { SERVE_ENV } from '../config.js';
import { loadPepper, missingPepper, PepperError } from '../identity/pepper.js';
import type { Catalog } from '../policy/catalog.js';
import { CatalogError, formatIssue, loadCatalogFile } from '../policy/load.js';
import {
  byPartner,
  compareDecisions,
  diffDocuments,
  diffReferences,
  type EntityChange,
  type FieldChange,
  type Flip,
  type FlipReport,
  type LoadedCatalog,
  loadForDiff,
  type Outcome,
} from '../policy-tools/diff.js';
import { HarnessInputError } from '../policy-tools/harness.js';
import {
  type Actual,
  type CaseResult,
  type FixtureFile,
  findFixtureFiles,
  loadFixtures,
  runFixtures,
} from '../policy-tools/policy-test.js';
import { POLICY_DIFF_HELP, POLICY_HELP, POLICY_TEST_HELP } from './help.js';

/** Where output goes: the process by default, a buffer in tests. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

class Usage extends Error {}

function parse(args: readonly string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (err: unknown) {
    throw new Usage(err instanceof Error ? err.message : String(err));
  }
}

/** As serve reads it (flag, then the environment), whatever the catalog's path. */
async function pepperFor(flag: string | undefined): Promise<Buffer | null> {
  const apiKeyPepperFile = flag ?? process.env[SERVE_ENV.apiKeyPepperFile] ?? '';
  return loadPepper({ apiKeyPepperFile }, process.env);
}

function catalogProblems(io: Io, err: CatalogError, file: string): number {
  for (const issue of err.issues) io.err(`${formatIssue(issue)}\n`);
  io.err(`invalid catalog ${file}: ${err.issues.length} problem${err.issues.length === 1 ? '' : 's'}\n`);
  return 2;
}

/** Loads fixtures; prints their problems and returns null when any is invalid. */
function fixturesIn(io: Io, target: string): FixtureFile[] | null {
  const files = findFixtureFiles(target);
  if (files.length === 0) {
    io.err(`portcullis: no fixture files (*.yaml, *.yml) in ${target}\n`);
    return null;
  }
  const root = statSync(target).isFile() ? dirname(target) : target;
  const { files: loaded, issues } = loadFixtures(files, root);
  if (issues.length === 0) return loaded;
  for (const issue of issues) io.err(`${formatIssue(issue)}\n`);
  io.err(`${issues.length} problem${issues.length === 1 ? '' : 's'} in the policy tests\n`);
  return null;
}

// ---------------------------------------------------------------------------------------------
// policy test

export async function policyTest(args: readonly string[], io: Io = processIo): Promise<number> {
  try {
    return await runPolicyTest(args, io);
  } catch (err: unknown) {
    if (err instanceof Usage) {
      io.err(`portcullis policy test: ${err.message}\n\n${POLICY_TEST_HELP}`);
      return 2;
    }
    if (err instanceof HarnessInputError || err instanceof PepperError || isFsError(err)) {
      io.err(`portcullis: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

async function runPolicyTest(args: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    catalog: { type: 'string' },
    'pepper-file': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.out(POLICY_TEST_HELP);
    return 0;
  }
  const [target, ...extra] = positionals;
  if (!target || extra.length > 0) throw new Usage('expected one DIR (or fixture FILE)');
  if (!existsSync(target)) throw new HarnessInputError(`${target}: no such file or directory`);
  const base = statSync(target).isFile() ? dirname(target) : target;
  const catalogFile = typeof values.catalog === 'string' ? values.catalog : join(base, '..', 'catalog.yaml');
  const chosen = typeof values.catalog === 'string' ? '--catalog' : 'default: DIR/../catalog.yaml';
  const json = values.json === true;

  let catalog: Catalog;
  try {
    catalog = await loadCatalogFile(catalogFile);
  } catch (err: unknown) {
    if (err instanceof CatalogError) return catalogProblems(io, err, catalogFile);
    throw err;
  }
  const pepperFlag = typeof values['pepper-file'] === 'string' ? values['pepper-file'] : undefined;
  const apiKeyPepper = await pepperFor(pepperFlag);
  const fixtures = fixturesIn(io, target);
  if (!fixtures) return 2;

  if (!json) {
    io.out(
      `catalog ${catalogFile} (${chosen}), version ${catalog.version}${catalog.versionName ? ` (${catalog.versionName})` : ''}\n`,
    );
  }
  const report = await runFixtures(catalog, fixtures, { apiKeyPepper }, (result) => {
    if (!json) io.out(renderCase(result));
  });
  if (json) {
    io.out(
      `${JSON.stringify(
        {
          catalog: {
            file: catalogFile,
            chosen_by: typeof values.catalog === 'string' ? 'flag' : 'default',
            version: catalog.version,
            name: catalog.versionName,
          },
          passed: report.passed,
          failed: report.failed,
          cases: report.results.map(caseJson),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    io.out(`\n${report.passed} passed, ${report.failed} failed\n`);
  }
  return report.failed > 0 ? 1 : 0;
}

function renderCase(r: CaseResult): string {
  const title = `${r.display} › ${r.name}`;
  if (r.passed) return `PASS ${title}\n`;
  const which = r.repeat > 1 ? ` (request ${r.iteration} of ${r.repeat})` : '';
  if (!r.actual)
    return `FAIL ${title}${which}: cannot run: ${r.error ?? 'unknown error'}\n  at ${r.file}:${r.line}\n`;
  const [first, ...rest] = [...new Set(r.mismatches.map((m) => m.message))];
  const lines = [`FAIL ${title}${which}: ${first ?? ''}`];
  for (const message of rest) lines.push(`  ${message}`);
  lines.push(`  got: ${summary(r.actual)}`);
  if (r.actual.reason && !first?.includes('(reason:')) lines.push(`  reason: ${r.actual.reason}`);
  if (r.hint) lines.push(`  hint: ${r.hint}`);
  lines.push(`  at ${r.file}:${r.line}`);
  return `${lines.join('\n')}\n`;
}

function summary(a: Actual | Outcome): string {
  const status = a.decision === 'allow' ? '' : ` ${a.status}`;
  const dryRun = a.dryRun ? ` (dry run: would deny ${a.dryRun})` : '';
  return `${a.decision}${status} ${a.code}${dryRun} route=${a.route || '-'} partner=${a.partner || '-'}`;
}

function caseJson(r: CaseResult) {
  return {
    file: r.file,
    name: r.name,
    line: r.line,
    passed: r.passed,
    iteration: r.iteration,
    repeat: r.repeat,
    mismatches: r.mismatches,
    actual: r.actual && {
      decision: r.actual.decision,
      code: r.actual.code,
      status: r.actual.status,
      route: r.actual.route,
      partner: r.actual.partner,
      reason: r.actual.reason,
      detail: r.actual.detail,
      dry_run: r.actual.dryRun,
      upstream_headers: r.actual.upstreamHeaders,
      response_headers: r.actual.responseHeaders,
      headers_removed: r.actual.headersRemoved,
      query_removed: r.actual.queryRemoved,
    },
    ...(r.error ? { error: r.error } : {}),
    ...(r.hint ? { hint: r.hint } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// policy diff

export async function policyDiff(args: readonly string[], io: Io = processIo): Promise<number> {
  try {
    return await runPolicyDiff(args, io);
  } catch (err: unknown) {
    if (err instanceof Usage) {
      io.err(`portcullis policy diff: ${err.message}\n\n${POLICY_DIFF_HELP}`);
      return 2;
    }
    if (err instanceof HarnessInputError || err instanceof PepperError || isFsError(err)) {
      io.err(`portcullis: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

async function runPolicyDiff(args: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    tests: { type: 'string' },
    audit: { type: 'string' },
    'pepper-file': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.out(POLICY_DIFF_HELP);
    return 0;
  }
  const [oldFile, newFile, ...extra] = positionals;
  if (!oldFile || !newFile || extra.length > 0) throw new Usage('expected two catalogs, OLD and NEW');
  const load = async (file: string): Promise<LoadedCatalog | number> => {
    try {
      return await loadForDiff(file);
    } catch (err: unknown) {
      if (err instanceof CatalogError) return catalogProblems(io, err, file);
      throw err;
    }
  };
  const before = await load(oldFile);
  if (typeof before === 'number') return before;
  const after = await load(newFile);
  if (typeof after === 'number') return after;

  const testsDir = typeof values.tests === 'string' ? values.tests : undefined;
  const auditFile = typeof values.audit === 'string' ? values.audit : undefined;
  let tests: FixtureFile[] | undefined;
  if (testsDir !== undefined) {
    const loaded = fixturesIn(io, testsDir);
    if (!loaded) return 2;
    tests = loaded;
  }
  let audit: { file: string; text: string } | undefined;
  if (auditFile !== undefined) {
    try {
      audit = { file: auditFile, text: await readFile(auditFile, 'utf8') };
    } catch (err: unknown) {
      io.err(`portcullis: cannot read the audit log: ${err instanceof Error ? err.message : String(err)}\n`);
      return 2;
    }
  }
  const pepperFlag = typeof values['pepper-file'] === 'string' ? values['pepper-file'] : undefined;
  const apiKeyPepper = await pepperFor(pepperFlag);
  const changes = [
    ...diffDocuments(before.document, after.document),
    ...diffReferences(before.catalog.references, after.catalog.references),
  ];
  const report = await compareDecisions(before.catalog, after.catalog, { tests, audit }, { apiKeyPepper });
  const hasSamples = tests !== undefined || audit !== undefined;
  io.out(
    values.json === true
      ? `${JSON.stringify(diffJson(before, after, changes, report, hasSamples), null, 2)}\n`
      : renderDiff(before, after, changes, report, hasSamples),
  );
  return report.flips.length > 0 ? 1 : 0;
}

function label(c: LoadedCatalog): string {
  const name = c.catalog.versionName ? ` (${c.catalog.versionName})` : '';
  return `${c.file}  ${c.catalog.version}${name}`;
}

export function renderDiff(
  before: LoadedCatalog,
  after: LoadedCatalog,
  changes: readonly EntityChange[],
  report: FlipReport,
  hasSamples: boolean,
): string {
  const lines: string[] = [`policy diff`, `  old: ${label(before)}`, `  new: ${label(after)}`, ''];
  if (changes.length === 0) {
    lines.push('Catalog: no structural changes');
  } else {
    lines.push(`Catalog: ${changes.length} change${changes.length === 1 ? '' : 's'}`);
    for (const c of changes) lines.push(...renderChange(c));
  }
  lines.push('');
  if (!hasSamples) {
    lines.push('Decisions: no sample requests (give --tests DIR and/or --audit FILE to see what flips)');
    return `${lines.join('\n')}\n`;
  }
  const { tests, audit } = report.samples;
  const sources = [
    ...(tests > 0 ? [`${tests} from tests`] : []),
    ...(report.audit ? [`${audit} from ${report.audit.file}`] : []),
  ];
  lines.push(
    `Decisions: ${tests + audit} sample request${tests + audit === 1 ? '' : 's'} (${sources.join(', ') || 'none'}), ` +
      `${report.flips.length} flip${report.flips.length === 1 ? '' : 's'}`,
  );
  for (const [partner, flips] of byPartner(report.flips)) {
    lines.push('', `  partner ${partner} (${flips.length})`);
    for (const flip of flips) lines.push(...renderFlip(flip));
  }
  if (report.dryRunChanges.length > 0) {
    lines.push('', `Dry-run changes (enforced decision unchanged): ${report.dryRunChanges.length}`);
    for (const flip of report.dryRunChanges) lines.push(...renderFlip(flip));
  }
  if (report.notCompared.length > 0) {
    lines.push('', `Not compared: ${report.notCompared.length}`);
    for (const n of report.notCompared) lines.push(`    ${n.sample}: ${n.error}`);
  }
  if (report.audit) {
    const a = report.audit;
    const skipped = a.skipped.reduce((n, s) => n + s.lines.length, 0);
    lines.push(
      '',
      `Audit log ${a.file}: ${a.lines} lines, ${a.decisions} decisions, ${a.replayed} replayed, ${skipped} not replayable`,
    );
    for (const s of a.skipped) lines.push(`    ${s.lines.length} × ${s.reason} (${lineList(s.lines)})`);
    if (a.disagreements.length > 0) {
      const first = a.disagreements[0];
      lines.push(
        `    ${a.disagreements.length} replayed on OLD differ from the log (first: line ${first?.line}, logged ${first?.logged}, ` +
          `replayed ${first?.replayed}): the log may come from another version, or the decision hung on what the log lacks`,
      );
    }
    if (a.otherVersions > 0) {
      lines.push(`    ${a.otherVersions} lines were decided by another catalog version than OLD`);
    }
  }
  lines.push(
    '',
    report.flips.length === 0
      ? 'No decision flips.'
      : `${report.flips.length} ${report.flips.length === 1 ? 'decision flips' : 'decisions flip'}.`,
  );
  return `${lines.join('\n')}\n`;
}

function renderChange(c: EntityChange): string[] {
  const sign = c.change === 'added' ? '+' : c.change === 'removed' ? '-' : '~';
  const title = c.name ? `${c.kind} ${c.name}` : c.kind;
  const out = [
    `  ${sign} ${title}${c.change === 'changed' ? '' : ` ${c.change}`}${c.note ? ` (${c.note})` : ''}`,
  ];
  if (c.change !== 'changed') {
    // In full: an added partner or route is read in review, not guessed from its first line.
    const text = typeof c.value === 'string' ? c.value : stringifyYaml(c.value, { lineWidth: 0 });
    for (const line of text.trimEnd().split('\n')) out.push(`      ${line}`);
    return out;
  }
  for (const f of c.fields) out.push(`      ${renderField(f)}`);
  return out;
}

export function renderField(f: FieldChange): string {
  const path = f.path || '(value)';
  switch (f.kind) {
    case 'changed':
      return `${path}: ${truncate(flow(f.old), 140)} → ${truncate(flow(f.new), 140)}`;
    case 'added':
      return `${path}: added ${truncate(flow(f.value), 200)}`;
    case 'removed':
      return `${path}: removed ${truncate(flow(f.value), 200)}`;
    case 'items': {
      const parts: string[] = [];
      if (f.added.length > 0) parts.push(`added ${f.added.map(flow).join(', ')}`);
      if (f.removed.length > 0) parts.push(`removed ${f.removed.map(flow).join(', ')}`);
      return `${path}: ${parts.join('; ')}`;
    }
    case 'reordered':
      return `${path}: ${f.old.join(', ')} → ${f.new.join(', ')}`;
  }
}

function renderFlip(f: Flip): string[] {
  const kind = f.kind === 'code' ? 'code' : f.kind === 'dry_run' ? 'dry run' : f.kind;
  const which =
    f.repeat > 1 ? ` (${f.flipped} of ${f.repeat} requests flip, first: request ${f.iteration})` : '';
  const out = [`    ${kind.padEnd(12)}${f.sample}${which}`, `                ${f.request}`];
  if (f.final) {
    // What the case ends with comes first: a rate-limited case is about its last answer.
    out.push(
      `                final (request ${f.repeat}): ${outcomeText(f.final.old)} → ${outcomeText(f.final.new)}`,
    );
    out.push(
      `                first flip (request ${f.iteration}): ${outcomeText(f.old)} → ${outcomeText(f.new)}`,
    );
  } else out.push(`                ${outcomeText(f.old)} → ${outcomeText(f.new)}`);
  if (f.new.decision === 'deny' && f.new.reason) out.push(`                NEW reason: ${f.new.reason}`);
  for (const a of f.assumptions) out.push(`                assumed: ${a}`);
  return out;
}

function outcomeText(o: Outcome): string {
  const status = o.decision === 'allow' ? '' : ` (${o.status})`;
  return `${o.decision} ${o.code}${status}${o.dryRun ? ` [dry run: ${o.dryRun}]` : ''}`;
}

function lineList(lines: readonly number[]): string {
  const shown = lines.slice(0, 8).map((l) => `line ${l}`);
  return lines.length > 8 ? `${shown.join(', ')}, …` : shown.join(', ');
}

/** Values in YAML flow style: `{algorithm: gcra, limit: 20}`, `[GET, POST]`. */
export function flow(value: unknown): string {
  if (value === undefined) return '(none)';
  if (value === null) return 'null';
  if (typeof value === 'string') return /^[A-Za-z0-9_./:@*+-]+$/.test(value) ? value : JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(flow).join(', ')}]`;
  if (typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([k, v]) => `${k}: ${flow(v)}`)
      .join(', ')}}`;
  }
  return String(value);
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function diffJson(
  before: LoadedCatalog,
  after: LoadedCatalog,
  changes: readonly EntityChange[],
  report: FlipReport,
  hasSamples: boolean,
) {
  const ref = (c: LoadedCatalog) => ({
    file: c.file,
    version: c.catalog.version,
    name: c.catalog.versionName,
  });
  const outcome = (o: Outcome) => ({
    decision: o.decision,
    code: o.code,
    status: o.status,
    partner: o.partner,
    route: o.route,
    reason: o.reason,
    dry_run: o.dryRun,
  });
  const flip = (f: Flip) => ({
    sample: f.sample,
    origin: f.origin,
    request: f.request,
    partner: f.partner,
    kind: f.kind,
    old: outcome(f.old),
    new: outcome(f.new),
    iteration: f.iteration,
    flipped: f.flipped,
    repeat: f.repeat,
    final: f.final ? { old: outcome(f.final.old), new: outcome(f.final.new) } : null,
    assumptions: f.assumptions,
  });
  return {
    old: ref(before),
    new: ref(after),
    changes,
    samples: hasSamples ? report.samples : null,
    flips: report.flips.map(flip),
    by_partner: Object.fromEntries(
      [...byPartner(report.flips)].map(([p, flips]) => [p, flips.map((f) => f.sample)]),
    ),
    dry_run_changes: report.dryRunChanges.map(flip),
    not_compared: report.notCompared,
    audit: report.audit && {
      file: report.audit.file,
      lines: report.audit.lines,
      decisions: report.audit.decisions,
      replayed: report.audit.replayed,
      skipped: report.audit.skipped,
      disagreements: report.audit.disagreements,
      other_versions: report.audit.otherVersions,
    },
  };
}

function isFsError(err: unknown): err is Error {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && 'syscall' in err;
}

export async function policyCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'test') return policyTest(rest);
  if (sub === 'diff') return policyDiff(rest);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { 'api-key-pepper-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [file, ...extra] = positionals;
  if (sub !== 'validate' || values.help || !file || extra.length > 0) {
    process.stderr.write(POLICY_HELP);
    return values.help ? 0 : 2;
  }
  try {
    const catalog = await loadCatalogFile(file);
    for (const warning of catalog.warnings) process.stdout.write(`warning: ${formatIssue(warning)}\n`);
    process.stdout.write(
      `ok: ${file}: version ${catalog.version}${catalog.versionName ? ` (${catalog.versionName})` : ''}, ` +
        `${catalog.routes.length} routes, ${catalog.partners.size} partners\n`,
    );
    // Valid, but would serve refuse it? The pepper is read exactly as serve reads it.
    if (catalog.apiKeysByHash.size > 0) {
      const apiKeyPepperFile = values['api-key-pepper-file'] ?? process.env[SERVE_ENV.apiKeyPepperFile] ?? '';
      try {
        if (!(await loadPepper({ apiKeyPepperFile }, process.env))) {
          process.stderr.write(
            `warning: ${missingPepper(file, catalog.apiKeysByHash.size)} (serve refuses to start without it)\n`,
          );
        }
      } catch (err: unknown) {
        if (!(err instanceof PepperError)) throw err;
        process.stderr.write(`warning: ${err.message} (serve refuses to start without it)\n`);
      }
    }
    return 0;
  } catch (err: unknown) {
    if (!(err instanceof CatalogError)) throw err;
    for (const issue of err.issues) process.stdout.write(`${formatIssue(issue)}\n`);
    process.stdout.write(`${err.issues.length} problem${err.issues.length === 1 ? '' : 's'} in ${file}\n`);
    return 1;
  }
}
