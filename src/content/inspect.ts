// Content inspection, the two halves the pipeline runs: `inspectCheap` before the quota (methods,
// size, truncation, type, digest, encoding, magic bytes, JSON limits and schema, form parsing) and
// `inspectScan` after it (malware, through the MalwareScanner it is given). Pure orchestration of the
// modules next to this one; the only I/O is the scanner's. The first failure wins, cheapest first.
import { Buffer } from 'node:buffer';
import type { Request } from '../request.js';
import type { MaybePromise } from '../stage.js';
import { BodyHashes, sha256Hex, verifyDigests } from './digest.js';
import { inspectJson, jsonStrings, type ParsedJson } from './json.js';
import {
  checkDeclaredType,
  type DetectedType,
  detectByMagic,
  detectText,
  detectType,
  formatRange,
  isFormType,
  isJsonType,
  isTextType,
  type MediaType,
  matchesAny,
  parseMediaType,
  parseMediaTypeCached,
} from './media.js';
import { type ParsedForm, parseForm, urlencodedBytes } from './multipart.js';
import type { MalwareScanner, ScanVerdict } from './scanner.js';
import {
  type ContentFailure,
  type ContentPolicy,
  fail,
  type JsonStats,
  type MediaRange,
  type Outcome,
  ok,
  type ScanPolicy,
} from './types.js';

/** What inspection reads of a request. */
export type ContentRequest = Pick<Request, 'method' | 'headers' | 'body' | 'bodyTruncated'>;

/** One object for the malware scan: the body, a file part, or the unescaped strings of a JSON body. */
export interface ScanTarget {
  /** 'body', 'body (JSON strings)', or 'part "field" (file name)'. For the audit log. */
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly sha256: string;
  /** The declared type, else the detected one. */
  readonly type: string;
}

export interface Inspected {
  readonly bodyBytes: number;
  /** Hex SHA-256 of the body as received: for the audit line and the scan cache. */
  readonly sha256: string;
  /** The declared Content-Type's essence; null without a body or a Content-Type. */
  readonly declaredType: string | null;
  /** What the bytes are (magic or heuristics); null when not looked at. */
  readonly detectedType: string | null;
  /**
   * 'checked': every check that applies ran. 'empty': no body. 'skipped_truncated': Envoy sent part of the
   * body and the route says skip. 'skipped_encoded': a Content-Encoding the route accepts (size, digest
   * and scan still apply; type, JSON and form checks cannot).
   */
  readonly deep: 'checked' | 'empty' | 'skipped_truncated' | 'skipped_encoded';
  /** Digests that matched: 'sha-256', 'sha-512', 'content-md5', 'x-checksum-sha256'. */
  readonly digests: readonly string[];
  /**
   * What the pre-scan measured of a JSON body. Not the parsed document: the Check holds its findings
   * through the quota round trip, and every scavenge meanwhile would copy the document.
   */
  readonly json: JsonStats | null;
  readonly form: ParsedForm | null;
  /** What inspectScan scans: empty without a scan policy or when nothing is of a scanned type. */
  readonly targets: readonly ScanTarget[];
}

export type ContentResult = Outcome<Inspected>;

/**
 * The cheap checks, in this turn when the body's type needs no magic-byte detection and it is not a
 * form (the common case: a JSON or text body), else in a promise.
 */
export function inspectCheap(request: ContentRequest, policy: ContentPolicy): MaybePromise<ContentResult> {
  const { body, headers } = request;
  const method = request.method.toUpperCase();
  const hashes = new BodyHashes(body);
  const declaredLength = parseContentLength(headers.get('content-length'));
  const hasBody = body.length > 0 || request.bodyTruncated || (declaredLength ?? 0) > 0;

  if (hasBody && policy.bodyForbiddenMethods.has(method)) {
    return fail({
      code: 'body_not_allowed',
      detail: `A ${method} request on this route must not carry a body.`,
      reason: `${method} with ${declaredLength ?? body.length} body bytes`,
    });
  }
  if (!hasBody && policy.bodyRequiredMethods.has(method)) {
    return fail({
      code: 'body_required',
      detail: `A ${method} request on this route must carry a body.`,
      reason: `${method} without a body`,
    });
  }

  const size = Math.max(body.length, declaredLength ?? 0);
  if (size > policy.maxBodyBytes) {
    return fail({
      code: 'body_too_large',
      detail: `The body is larger than this route accepts (${policy.maxBodyBytes} bytes).`,
      reason: `${size} bytes${declaredLength !== null ? ` (content-length ${declaredLength})` : ''}, limit ${policy.maxBodyBytes}`,
    });
  }

  let media: MediaType | null = null;
  const contentType = headers.get('content-type');
  if (hasBody) {
    const typed = checkContentType(contentType, policy.allowedTypes);
    if (!typed.ok) return typed;
    media = typed.value;
  }

  const sha256 = hashes.sha256Hex();
  const declaredType = media?.essence ?? null;

  if (request.bodyTruncated) {
    if (policy.onTruncated === 'deny') {
      return fail({
        code: 'body_truncated',
        detail:
          'The gateway received only part of the body, and this route checks whole bodies; send a smaller body.',
        reason: `truncated at ${body.length} bytes${declaredLength !== null ? ` of ${declaredLength}` : ''}`,
      });
    }
    return ok(unchecked(body, sha256, declaredType, 'skipped_truncated'));
  }
  if (body.length === 0) return ok(unchecked(body, sha256, declaredType, 'empty'));

  let digests: readonly string[] = [];
  if (policy.digest) {
    const checked = verifyDigests(headers, hashes, policy.digest);
    if (!checked.ok) return checked;
    digests = checked.value.verified;
  }

  const encodings = contentEncodings(headers.get('content-encoding'));
  const refused = encodings.find((e) => !policy.contentEncodings.includes(e));
  if (refused !== undefined) {
    const accepted =
      policy.contentEncodings.length > 0 ? `: use ${policy.contentEncodings.join(', ')} or none` : '';
    return fail({
      code: 'content_encoding_not_allowed',
      detail: `This route does not accept Content-Encoding ${JSON.stringify(refused.slice(0, 32))}${accepted}.`,
      reason: `content-encoding ${refused.slice(0, 64)}`,
    });
  }
  if (encodings.length > 0) {
    const targets = policy.scan
      ? bodyTargets(body, sha256, media?.essence ?? 'application/octet-stream', null, null, policy.scan)
      : [];
    return ok(unchecked(body, sha256, declaredType, 'skipped_encoded', digests, targets));
  }

  const typed: Typed = { media, contentType, sha256, declaredType, digests };
  if (!policy.magic && !policy.scan) return inspectDetected(request, policy, typed, null);
  const detected = detectText(body, media !== null && isTextType(media));
  // Only a body that is not the text its type promised needs file-type's magic bytes, which answer
  // in a promise: every other body is judged in this turn, with no promise and no microtask.
  if (detected === null)
    return detectByMagic(body).then((found) => inspectDetected(request, policy, typed, found));
  return inspectDetected(request, policy, typed, detected);
}

/** What inspectCheap learnt of the body's type before looking inside it. */
interface Typed {
  readonly media: MediaType | null;
  readonly contentType: string | undefined;
  readonly sha256: string;
  readonly declaredType: string | null;
  readonly digests: readonly string[];
}

/** The deep checks, once the body's type is known: JSON in this turn, forms in a promise. */
function inspectDetected(
  request: ContentRequest,
  policy: ContentPolicy,
  typed: Typed,
  detected: DetectedType | null,
): MaybePromise<ContentResult> {
  const { media, contentType } = typed;
  if (policy.magic && media && detected) {
    // Text that is not UTF-8 on a JSON route: the JSON parser says where (json_malformed) — binary
    // content or another format's signature is a type mismatch.
    const jsonParsesIt = policy.json !== null && isJsonType(media) && !detected.binary && !detected.magic;
    const why = jsonParsesIt ? null : checkDeclaredType(media, detected);
    if (why) return fail(mismatch('The body', media.essence, detected, why));
  }
  if (media && policy.json && isJsonType(media)) {
    const parsed = inspectJson(request.body, policy.json);
    if (!parsed.ok) return parsed;
    return checked(request, policy, typed, detected, parsed.value, null, []);
  }
  if (media && contentType !== undefined && policy.multipart && isFormType(media)) {
    return inspectForm(request, policy, policy.multipart, typed, detected, contentType, media);
  }
  return checked(request, policy, typed, detected, null, null, []);
}

async function inspectForm(
  request: ContentRequest,
  policy: ContentPolicy,
  multipart: NonNullable<ContentPolicy['multipart']>,
  typed: Typed,
  detected: DetectedType | null,
  contentType: string,
  media: MediaType,
): Promise<ContentResult> {
  const parsed = await parseForm(contentType, media, request.body, multipart);
  if (!parsed.ok) return parsed;
  const form = parsed.value;
  const detectedParts: (DetectedType | null)[] = [];
  for (const file of form.parts) {
    const partType = parseMediaType(file.declaredType);
    const partDetected =
      policy.magic || policy.scan
        ? await detectType(file.bytes, partType.ok && isTextType(partType.value))
        : null;
    detectedParts.push(partDetected);
    if (!policy.magic || !partDetected) continue;
    const why = partType.ok ? checkDeclaredType(partType.value, partDetected) : null;
    if (why)
      return fail(mismatch(`Part ${JSON.stringify(file.field)}`, file.declaredType, partDetected, why));
  }
  return checked(request, policy, typed, detected, null, form, detectedParts);
}

/** Every check passed: what the scan stage will scan, and the findings. */
function checked(
  request: ContentRequest,
  policy: ContentPolicy,
  typed: Typed,
  detected: DetectedType | null,
  json: ParsedJson | null,
  form: ParsedForm | null,
  detectedParts: readonly (DetectedType | null)[],
): ContentResult {
  const { body } = request;
  const { media, sha256 } = typed;
  let targets: ScanTarget[] = [];
  if (policy.scan) {
    if (form?.kind === 'multipart') {
      targets = form.parts.flatMap((file, i) => {
        const found = detectedParts[i] ?? null;
        if (!scanned(policy.scan as ScanPolicy, file.declaredType, found)) return [];
        const label = `part ${JSON.stringify(file.field)}${file.filename !== null ? ` (${JSON.stringify(file.filename.slice(0, 100))})` : ''}`;
        return [{ name: label, bytes: file.bytes, sha256: sha256Hex(file.bytes), type: file.declaredType }];
      });
    } else {
      targets = bodyTargets(
        body,
        sha256,
        media?.essence ?? detected?.mime ?? 'application/octet-stream',
        detected,
        json,
        policy.scan,
      );
      // A form's values reach the upstream decoded: %-escapes can hide a payload from a scan of the
      // raw body, so the decoded bytes are scanned too (when there is anything to decode).
      if (form?.kind === 'urlencoded' && targets.length > 0 && hasFormEscapes(body)) {
        const decoded = urlencodedBytes(body);
        targets.push({
          name: 'body (form values, decoded)',
          bytes: decoded,
          sha256: sha256Hex(decoded),
          type: 'text/plain',
        });
      }
    }
  }

  return ok({
    bodyBytes: body.length,
    sha256,
    declaredType: typed.declaredType,
    detectedType: detected?.mime ?? null,
    digests: typed.digests,
    json: json?.stats ?? null,
    form,
    targets,
    deep: 'checked',
  });
}

/**
 * The result when the deep checks did not run. Results are literals, not spreads of a shared base: V8
 * copies an object with spread on a slow path, a tenth of a whole JSON inspection.
 */
function unchecked(
  body: Uint8Array,
  sha256: string,
  declaredType: string | null,
  deep: Exclude<Inspected['deep'], 'checked'>,
  digests: readonly string[] = [],
  targets: readonly ScanTarget[] = [],
): Inspected {
  return {
    bodyBytes: body.length,
    sha256,
    declaredType,
    detectedType: null,
    digests,
    json: null,
    form: null,
    targets,
    deep,
  };
}

function checkContentType(
  value: string | undefined,
  allowed: readonly MediaRange[],
): Outcome<MediaType | null> {
  const list = () => allowed.map(formatRange).join(', ');
  if (value === undefined) {
    if (allowed.length === 0) return ok(null);
    return fail({
      code: 'media_type_not_allowed',
      detail: `A request body needs a Content-Type header; this route accepts ${list()}.`,
      reason: 'body without content-type',
    });
  }
  const parsed = parseMediaTypeCached(value);
  if (!parsed.ok) {
    return fail({
      code: 'media_type_invalid',
      detail: `The Content-Type header is not a valid media type (${parsed.reason}).`,
      reason: `content-type ${JSON.stringify(value.slice(0, 200))}: ${parsed.reason}`,
    });
  }
  const media = parsed.value;
  if (allowed.length > 0 && !matchesAny(media, allowed)) {
    return fail({
      code: 'media_type_not_allowed',
      detail: `This route does not accept ${describeMedia(media)}; it accepts ${list()}.`,
      reason: `content-type ${JSON.stringify(value.slice(0, 200))}`,
    });
  }
  // JSON is UTF-8 (RFC 8259 §8.1): another declared charset cannot be what we parse.
  const charset = media.params.get('charset')?.toLowerCase();
  if (isJsonType(media) && charset !== undefined && charset !== 'utf-8') {
    return fail({
      code: 'media_type_not_allowed',
      detail: `JSON bodies must be UTF-8; charset=${media.params.get('charset')} is not accepted.`,
      reason: `json with charset ${charset}`,
    });
  }
  return ok(media);
}

function describeMedia(media: MediaType): string {
  const charset = media.params.get('charset');
  return charset === undefined ? media.essence : `${media.essence}; charset=${charset}`;
}

function mismatch(what: string, declared: string, detected: DetectedType, why: string): ContentFailure {
  const found = detected.magic
    ? detected.mime
    : detected.binary
      ? 'binary data'
      : detected.utf8
        ? 'text'
        : 'non-UTF-8 data';
  return {
    code: 'media_type_mismatch',
    detail: `${what} is declared as ${declared} but its content is ${found}.`,
    reason: why,
  };
}

function parseContentLength(value: string | undefined): number | null {
  if (value === undefined || !/^\s*\d{1,15}\s*$/.test(value)) return null;
  return Number(value);
}

/** Content codings in the order applied, lower-case, without identity. */
function contentEncodings(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'identity');
}

function hasFormEscapes(body: Uint8Array): boolean {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return buf.includes(0x25) || buf.includes(0x2b);
}

function typeMatches(essence: string, ranges: readonly MediaRange[]): boolean {
  const parsed = parseMediaTypeCached(essence);
  return parsed.ok && matchesAny(parsed.value, ranges);
}

/** Scanned when the policy lists no types, or lists the declared or the detected one. */
function scanned(scan: ScanPolicy, declared: string, detected: DetectedType | null): boolean {
  if (scan.types.length === 0) return true;
  return typeMatches(declared, scan.types) || (detected !== null && typeMatches(detected.mime, scan.types));
}

function bodyTargets(
  body: Uint8Array,
  sha256: string,
  type: string,
  detected: DetectedType | null,
  json: ParsedJson | null,
  scan: ScanPolicy,
): ScanTarget[] {
  if (!scanned(scan, type, detected)) return [];
  const targets: ScanTarget[] = [{ name: 'body', bytes: body, sha256, type }];
  // A payload inside a JSON string is escaped in the raw body (a backslash becomes two): when the body has
  // escapes, the unescaped strings are scanned too. Without any, every string is verbatim in the body.
  if (!json) return targets;
  const raw = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (raw.includes(0x5c)) {
    // The fast pass accepts no body with an escape (json-accept.ts), so this one was parsed; were
    // that ever to change, parse it here rather than scan less.
    const strings = jsonStrings(json.value === undefined ? JSON.parse(raw.toString('utf8')) : json.value);
    targets.push({
      name: 'body (JSON strings)',
      bytes: strings,
      sha256: sha256Hex(strings),
      type: 'text/plain',
    });
  }
  return targets;
}

export type ScanReportVerdict =
  | 'clean'
  | 'not_scanned'
  | 'error_allowed'
  | 'infected'
  | 'error'
  | 'too_large';

export interface ScannedTarget {
  readonly name: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly verdict: ScanVerdict['verdict'];
  readonly cached: boolean;
}

/** For the audit line and metrics: the overall verdict and each object scanned. */
export interface ScanReport {
  readonly verdict: ScanReportVerdict;
  readonly targets: readonly ScannedTarget[];
  /** Why nothing was scanned, or what failed on a route that lets scan errors through. '' otherwise. */
  readonly note: string;
}

export type ScanResult =
  | { readonly ok: true; readonly value: ScanReport }
  | { readonly ok: false; readonly failure: ContentFailure; readonly report: ScanReport };

/**
 * Scans the targets inspectCheap chose, one after the other, within `deadlineMs` (epoch ms on the
 * scanner's clock). Infected → malware_detected (the signature only in the reason); over the size
 * clamd accepts → scan_too_large, before anything is sent; a scanner failure → scan_unavailable, or a
 * pass marked error_allowed on a route with `onError: allow`.
 */
export async function inspectScan(
  inspected: Inspected,
  policy: ContentPolicy,
  scanner: MalwareScanner,
  deadlineMs: number,
): Promise<ScanResult> {
  const scan = policy.scan;
  const report = (verdict: ScanReportVerdict, targets: readonly ScannedTarget[], note = ''): ScanReport => ({
    verdict,
    targets,
    note,
  });
  if (!scan) return { ok: true, value: report('not_scanned', [], 'no scan policy') };
  if (inspected.targets.length === 0) {
    const note =
      inspected.deep === 'skipped_truncated'
        ? 'body truncated: not scanned'
        : inspected.deep === 'empty'
          ? 'no body'
          : 'nothing of a scanned type';
    return { ok: true, value: report('not_scanned', [], note) };
  }
  const oversize = inspected.targets.find((t) => t.bytes.length > scan.maxBytes);
  if (oversize) {
    return {
      ok: false,
      failure: {
        code: 'scan_too_large',
        detail: `The content is larger than the gateway can scan for malware (${scan.maxBytes} bytes); send a smaller file.`,
        reason: `${oversize.name}: ${oversize.bytes.length} bytes over the scan limit ${scan.maxBytes}`,
      },
      report: report('too_large', []),
    };
  }
  const done: ScannedTarget[] = [];
  const errors: string[] = [];
  for (const target of inspected.targets) {
    const verdict = await scanner.scan(target.bytes, deadlineMs, {
      sha256: target.sha256,
      timeoutMs: scan.timeoutMs,
    });
    done.push({
      name: target.name,
      bytes: target.bytes.length,
      sha256: target.sha256,
      verdict: verdict.verdict,
      cached: verdict.verdict === 'clean' && verdict.cached === true,
    });
    switch (verdict.verdict) {
      case 'clean':
        break;
      case 'infected':
        return {
          ok: false,
          failure: {
            code: 'malware_detected',
            detail:
              target.name === 'body' || target.name.startsWith('body ')
                ? 'The body was refused by the malware scan.'
                : `The file in ${target.name} was refused by the malware scan.`,
            reason: `${verdict.signature} in ${target.name} (sha256 ${target.sha256})`,
          },
          report: report('infected', done),
        };
      case 'too_large':
        return {
          ok: false,
          failure: {
            code: 'scan_too_large',
            detail: `The content is larger than the gateway can scan for malware (${verdict.maxBytes} bytes); send a smaller file.`,
            reason: `${target.name}: ${verdict.reason}`,
          },
          report: report('too_large', done),
        };
      case 'error':
        if (scan.onError === 'deny') {
          return {
            ok: false,
            failure: {
              code: 'scan_unavailable',
              detail: 'The gateway cannot scan the content for malware right now; retry later.',
              reason: `${target.name}: ${verdict.reason}`,
            },
            report: report('error', done),
          };
        }
        errors.push(`${target.name}: ${verdict.reason}`);
        break;
    }
  }
  if (errors.length > 0) {
    return {
      ok: true,
      value: report('error_allowed', done, `scan failed, let through (onError: allow): ${errors.join('; ')}`),
    };
  }
  return { ok: true, value: report('clean', done) };
}
