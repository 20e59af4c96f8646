// The decision line, written by hand: the bytes pino wrote for `logger.info(fields, 'decision')`
// with createLogger's options (same keys, same order, same escaping), without building the fields
// object or pino's chain of string concatenations. It is pushed as pieces into a PieceBuffer and
// joined once, so a line costs one flat string (or a share of one, when lines are batched).
import type { Decision } from '../decision.js';
import type { Request } from '../request.js';

/** What createLogger puts on every line (pino's `base`); the decision line writes the same. */
export const LOG_BASE = { service: 'portcullis' } as const;

// pino's order: the level label (formatters.level), isoTime, the base bindings, the fields, `msg`.
const BEFORE_TIME = '{"level":"info","time":"';
const AFTER_TIME = `"${Object.entries(LOG_BASE)
  .map(([k, v]) => `,${JSON.stringify(k)}:${JSON.stringify(v)}`)
  .join('')}`;
const TAIL = ',"msg":"decision"}\n';
const TAIL_AFTER_OPEN = `"${TAIL}`;

/**
 * Pieces of text joined into one string at the end. The array keeps its capacity between joins:
 * emptying it with `length = 0` would free its store and regrow it on every line.
 */
export class PieceBuffer {
  private readonly parts: string[] = [];
  private used = 0;

  push(piece: string): void {
    if (this.used < this.parts.length) this.parts[this.used] = piece;
    else this.parts.push(piece);
    this.used++;
  }

  get empty(): boolean {
    return this.used === 0;
  }

  /** Everything pushed since the last take, as one string; the buffer is empty after. */
  take(): string {
    const parts = this.parts;
    // join walks (and allocates a slot for) every element: no stale tail from a bigger batch.
    // V8 shortens in place, keeping the store unless most of it is unused.
    parts.length = this.used;
    const text = parts.join('');
    // Drop the references; the next lines overwrite these slots.
    for (let i = 0; i < this.used; i++) parts[i] = '';
    this.used = 0;
    return text;
  }
}

/** True when JSON.stringify(s) is `"${s}"`: no quote, backslash, control character or surrogate. */
function plain(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return false;
  }
  return true;
}

// Each field is two pieces, its key and its value: a plain string's quotes belong to the keys
// around it (the opening one ends its key, the closing one starts the next key), so a line is ~40
// pieces, not ~60 (join allocates a slot per piece on top of the line).

/** A key as written before a plain string (quote opened) or a JSON value, after a closed value or an open string. */
interface Key {
  readonly text: string;
  readonly textAfterOpen: string;
  readonly json: string;
  readonly jsonAfterOpen: string;
}

function key(name: string): Key {
  const k = `,${JSON.stringify(name)}:`;
  return { text: `${k}"`, textAfterOpen: `"${k}"`, json: k, jsonAfterOpen: `"${k}` };
}

const K = {
  decisionId: key('decision_id'),
  requestId: key('request_id'),
  decision: key('decision'),
  code: key('code'),
  partner: key('partner'),
  route: key('route'),
  reason: key('reason'),
  latencyMs: key('latency_ms'),
  policyVersion: key('policy_version'),
  policyName: key('policy_name'),
  method: key('method'),
  host: key('host'),
  path: key('path'),
  sourceIp: key('source_ip'),
  bodyBytes: key('body_bytes'),
  headers: key('headers'),
  bodySha256: key('body_sha256'),
  scan: key('scan'),
  dryRun: key('dry_run'),
};

/**
 * A string field exactly as JSON.stringify writes the value; nothing for undefined (as pino).
 * `open`: the previous value is a plain string whose closing quote is still to write. Returns
 * the same for this field.
 */
function text(out: PieceBuffer, k: Key, value: string | undefined, open: boolean): boolean {
  if (value === undefined) return open;
  if (plain(value)) {
    out.push(open ? k.textAfterOpen : k.text);
    out.push(value);
    return true;
  }
  // Escapes, and writes a lone surrogate as \udXXX: the line stays valid UTF-8 JSON.
  return json(out, k, JSON.stringify(value), open);
}

/** A field whose value is already JSON. */
function json(out: PieceBuffer, k: Key, value: string, open: boolean): false {
  out.push(open ? k.jsonAfterOpen : k.json);
  out.push(value);
  return false;
}

/** A number field, null when not finite (as pino). */
function number(out: PieceBuffer, k: Key, value: number, open: boolean): false {
  return json(out, k, Number.isFinite(value) ? String(value) : 'null', open);
}

let isoMs = -1;
let iso = '';
/** pino.stdTimeFunctions.isoTime's text, made once per millisecond. */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoMs = ms;
    iso = new Date(ms).toISOString();
  }
  return iso;
}

/** What a decision line is made of. */
export interface DecisionLine {
  readonly decision: Decision;
  readonly request: Request | null;
  readonly latencyMs: number;
  readonly policyName: string;
}

/**
 * Pushes one complete line (newline included) into `out`. `headersJson`: the redacted headers,
 * serialized, when the catalog logs them.
 */
export function writeDecisionLine(
  out: PieceBuffer,
  line: DecisionLine,
  headersJson: string | undefined,
): void {
  const { decision: d, request: r } = line;
  out.push(BEFORE_TIME);
  out.push(isoNow());
  out.push(AFTER_TIME);
  let open = text(out, K.decisionId, d.decisionId, false);
  open = text(out, K.requestId, d.requestId, open);
  open = text(out, K.decision, d.kind, open);
  open = text(out, K.code, d.code, open);
  open = text(out, K.partner, d.partner, open);
  open = text(out, K.route, d.route, open);
  open = text(out, K.reason, d.reason, open);
  open = number(out, K.latencyMs, Math.round(line.latencyMs * 1000) / 1000, open);
  open = text(out, K.policyVersion, d.policyVersion, open);
  open = text(out, K.policyName, line.policyName, open);
  if (r) {
    open = text(out, K.method, r.method, open);
    open = text(out, K.host, r.host, open);
    open = text(out, K.path, r.path, open);
    open = text(out, K.sourceIp, r.source.address, open);
    open = number(out, K.bodyBytes, r.body.length, open);
    if (headersJson !== undefined) open = json(out, K.headers, headersJson, open);
  }
  if (d.content) {
    open = text(out, K.bodySha256, d.content.sha256, open);
    open = text(out, K.scan, d.content.scan, open);
  }
  if (d.kind === 'allow' && d.dryRun) open = text(out, K.dryRun, d.dryRun, open);
  out.push(open ? TAIL_AFTER_OPEN : TAIL);
}
