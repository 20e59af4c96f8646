// The audit log: one JSON line per decision, in the logger's stream. Secrets never reach it: the
// path is logged without its query, and of the headers (only when the catalog asks for them) only
// an allow-list of credential-free ones keep their values.
//
// A decision line is written by hand (audit-line.ts), the same bytes pino would write, because
// pino's generic path (a fields object, then string concatenation) cost ~7 KB of garbage per Check.
// A line with an error goes through pino, whose serializer renders errors; so does a line for a
// logger createLogger did not make, whose options the hand-written line would not know.
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config.js';
import type { Decision } from '../decision.js';
import type { Request } from '../request.js';
import { LOG_BASE, writeDecisionLine } from './audit-line.js';
import { LineWriter } from './line-writer.js';

/** The hand-written lines' writer of each logger createLogger made (their stream is the logger's). */
const writers = new WeakMap<Logger, LineWriter>();

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const stream = destination ?? pino.destination({ sync: false });
  const writer = new LineWriter(stream);
  const options: pino.LoggerOptions = {
    level,
    base: LOG_BASE,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // The decision lines still waiting for their batch go first: the log keeps its order.
    hooks: {
      logMethod(args, method) {
        writer.flush();
        method.apply(this, args);
      },
    },
  };
  const logger = pino(options, stream);
  writers.set(logger, writer);
  return logger;
}

/** Hands the decision lines not yet written to the logger's stream (the app's stop calls it). */
export function flushAudit(logger: Logger): void {
  writers.get(logger)?.flush();
}

/**
 * The only headers whose values reach the audit line: none of them carries a credential. Redaction
 * by name (a list of secret headers) cannot know a route's own API key header, a partner's custom
 * auth header or a `referer` holding a token; an allow-list needs to know nothing about them.
 * docs/configuration.md (settings.audit.headers) lists the same names.
 */
export const LOGGED_HEADERS: ReadonlySet<string> = new Set([
  'accept',
  'accept-encoding',
  'accept-language',
  'content-type',
  'content-length',
  'content-encoding',
  'content-digest',
  'want-content-digest',
  'user-agent',
  'x-request-id',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-envoy-auth-partial-body',
  'traceparent',
  'tracestate',
]);

export const REDACTED = '[redacted]';

/** Headers safe to log: allow-listed ones with their value, others named with a marker, pseudo-headers dropped. */
export function redactHeaders(headers: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    if (name.startsWith(':')) continue;
    out[name] = LOGGED_HEADERS.has(name) ? value : REDACTED;
  }
  return out;
}

export interface AuditEntry {
  readonly decision: Decision;
  readonly request: Request | null;
  readonly latencyMs: number;
  readonly policyName: string;
  readonly includeHeaders: boolean;
  readonly error?: unknown;
}

export function audit(logger: Logger, entry: AuditEntry): void {
  // Build nothing the level would discard (asked every time: the level can change at run time).
  if (!logger.isLevelEnabled('info')) return;
  const writer = writers.get(logger);
  if (writer === undefined || entry.error !== undefined) {
    writer?.flush(); // the decision lines keep their order
    logger.info(auditFields(entry), 'decision');
    return;
  }
  const r = entry.request;
  const headers = r && entry.includeHeaders ? JSON.stringify(redactHeaders(r.headers)) : undefined;
  writeDecisionLine(writer.pieces, entry, headers);
  writer.lineDone();
}

/** The decision line as pino's fields (the pino path; the hand-written line has the same). */
export function auditFields(entry: AuditEntry): Record<string, unknown> {
  const { decision: d, request: r } = entry;
  const line: Record<string, unknown> = {
    decision_id: d.decisionId,
    request_id: d.requestId,
    decision: d.kind,
    code: d.code,
    partner: d.partner,
    route: d.route,
    reason: d.reason,
    latency_ms: Math.round(entry.latencyMs * 1000) / 1000,
    policy_version: d.policyVersion,
    policy_name: entry.policyName,
  };
  if (r) {
    line.method = r.method;
    line.host = r.host;
    line.path = r.path;
    line.source_ip = r.source.address;
    line.body_bytes = r.body.length;
    if (entry.includeHeaders) line.headers = redactHeaders(r.headers);
  }
  if (d.content) {
    line.body_sha256 = d.content.sha256;
    line.scan = d.content.scan;
  }
  if (d.kind === 'allow' && d.dryRun) line.dry_run = d.dryRun;
  if (entry.error !== undefined) line.err = entry.error;
  return line;
}
