// The audit log: one JSON line per decision, through pino. Secrets never reach it: the path is
// logged without its query, and headers (only when the catalog asks for them) are redacted.
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config.js';
import type { Decision } from '../decision.js';
import type { Request } from '../request.js';

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'portcullis' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options, pino.destination({ sync: false }));
}

const SECRET_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'x-forwarded-client-cert',
]);
const SECRET_PATTERN = /token|secret|key|session|password|signature|credential/;

export const REDACTED = '[redacted]';

/** Headers safe to log: credential-bearing ones replaced by a marker, pseudo-headers dropped. */
export function redactHeaders(headers: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    if (name.startsWith(':')) continue;
    out[name] = SECRET_HEADERS.has(name) || SECRET_PATTERN.test(name) ? REDACTED : value;
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
  // Build nothing the level would discard.
  if (!logger.isLevelEnabled('info')) return;
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
  logger.info(line, 'decision');
}
