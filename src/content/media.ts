// Media types: parsing Content-Type (RFC 9110 §8.3), matching it against a route's allowed list, and
// comparing what a body claims to be with what its bytes are (magic numbers via `file-type`, plus
// UTF-8 / control-character heuristics for text and JSON). Pure, except that `file-type` is async.
import { isUtf8 } from 'node:buffer';
import { fileTypeFromBuffer, supportedMimeTypes } from 'file-type';
import type { MediaRange } from './types.js';

/** A parsed Content-Type. Type, subtype and parameter names are lower-case; values as sent (unquoted). */
export interface MediaType {
  readonly type: string;
  readonly subtype: string;
  /** `type/subtype` */
  readonly essence: string;
  readonly params: ReadonlyMap<string, string>;
}

export type MediaTypeParse =
  | { readonly ok: true; readonly value: MediaType }
  | { readonly ok: false; readonly reason: string };

/** Longest Content-Type we parse; longer ones are refused as invalid. */
const MAX_CONTENT_TYPE = 1024;

// RFC 9110 §5.6.2 tchar, as a lookup table by character code.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
  TCHAR[c.charCodeAt(0)] = 1;

/**
 * Parses a Content-Type value: `type "/" subtype *( OWS ";" OWS [ name "=" ( token / quoted-string ) ] )`.
 * Type, subtype and parameter names are case-insensitive (lower-cased); no whitespace is allowed around
 * "/" or "="; a parameter named twice, a list of types (Envoy joins repeated headers with ","), or any
 * other deviation is refused.
 */
export function parseMediaType(value: string): MediaTypeParse {
  if (value.length > MAX_CONTENT_TYPE)
    return { ok: false, reason: `longer than ${MAX_CONTENT_TYPE} characters` };
  const s = value.replace(/^[ \t]+|[ \t]+$/g, '');
  let i = 0;
  const token = (): string => {
    const start = i;
    while (i < s.length && TCHAR[s.charCodeAt(i)] === 1) i++;
    return s.slice(start, i);
  };
  const type = token().toLowerCase();
  if (!type) return { ok: false, reason: 'no media type' };
  if (s[i] !== '/') return { ok: false, reason: `expected "/" after "${type}"` };
  i++;
  const subtype = token().toLowerCase();
  if (!subtype) return { ok: false, reason: 'no subtype' };
  const params = new Map<string, string>();
  for (;;) {
    while (s[i] === ' ' || s[i] === '\t') i++;
    if (i >= s.length) break;
    if (s[i] !== ';') return { ok: false, reason: `unexpected "${s[i]}" at ${i}` };
    i++;
    while (s[i] === ' ' || s[i] === '\t') i++;
    if (i >= s.length || s[i] === ';') continue; // an empty parameter is allowed
    const name = token().toLowerCase();
    if (!name) return { ok: false, reason: `unexpected "${s[i]}" at ${i}` };
    if (s[i] !== '=') return { ok: false, reason: `parameter "${name}" has no "=value"` };
    i++;
    let v: string;
    if (s[i] === '"') {
      i++;
      v = '';
      for (;;) {
        if (i >= s.length) return { ok: false, reason: `unterminated quoted value of "${name}"` };
        const c = s[i] as string;
        if (c === '"') {
          i++;
          break;
        }
        if (c === '\\') {
          const next = s[i + 1];
          if (next === undefined || !isQuotedChar(next))
            return { ok: false, reason: `bad escape in "${name}"` };
          v += next;
          i += 2;
          continue;
        }
        if (!isQuotedChar(c)) return { ok: false, reason: `control character in "${name}"` };
        v += c;
        i++;
      }
    } else {
      v = token();
      if (!v) return { ok: false, reason: `parameter "${name}" has an empty value` };
    }
    if (params.has(name)) return { ok: false, reason: `parameter "${name}" given twice` };
    params.set(name, v);
  }
  return { ok: true, value: { type, subtype, essence: `${type}/${subtype}`, params } };
}

/** Distinct Content-Type values remembered by parseMediaTypeCached; the cache starts over when full. */
const CACHE_SIZE = 256;
const parsedTypes = new Map<string, MediaTypeParse>();

/**
 * parseMediaType, remembered per value: a route sees a handful of Content-Type values, and each Check
 * would parse the same one again. Bounded (CACHE_SIZE, then cleared), so varied values cost what an
 * uncached parse costs and no more memory. The results are shared: frozen, their params a ReadonlyMap.
 */
export function parseMediaTypeCached(value: string): MediaTypeParse {
  let parsed = parsedTypes.get(value);
  if (parsed === undefined) {
    parsed = parseMediaType(value);
    if (parsed.ok) Object.freeze(parsed.value);
    if (parsedTypes.size >= CACHE_SIZE) parsedTypes.clear();
    parsedTypes.set(value, Object.freeze(parsed));
  }
  return parsed;
}

// qdtext / quoted-pair: HTAB, SP, VCHAR, obs-text.
function isQuotedChar(c: string): boolean {
  const code = c.charCodeAt(0);
  return code === 0x09 || (code >= 0x20 && code !== 0x7f);
}

/**
 * A media range for the catalog: `type/subtype`, `type/*` or `*\/*`, with the parameters a request must
 * carry, e.g. `application/json; charset=utf-8`. Throws an Error naming the problem.
 */
export function parseMediaRange(text: string): MediaRange {
  const parsed = parseMediaType(text);
  if (!parsed.ok) throw new Error(`invalid media type "${text}": ${parsed.reason}`);
  const { type, subtype, params } = parsed.value;
  if (type === '*' && subtype !== '*') throw new Error(`invalid media type "${text}": "*/${subtype}"`);
  if (type.includes('*') && type !== '*')
    throw new Error(`invalid media type "${text}": wildcard inside a type`);
  if (subtype.includes('*') && subtype !== '*')
    throw new Error(`invalid media type "${text}": wildcard inside a subtype`);
  return Object.freeze({ type, subtype, params });
}

/** Parameters whose values compare case-insensitively (RFC 9110 §8.3.2: charset). */
const CASE_INSENSITIVE_PARAMS = new Set(['charset']);

export function matchesRange(media: MediaType, range: MediaRange): boolean {
  if (range.type !== '*' && range.type !== media.type) return false;
  if (range.subtype !== '*' && range.subtype !== media.subtype) return false;
  for (const [name, want] of range.params) {
    const got = media.params.get(name);
    if (got === undefined) return false;
    if (CASE_INSENSITIVE_PARAMS.has(name) ? got.toLowerCase() !== want.toLowerCase() : got !== want)
      return false;
  }
  return true;
}

export function matchesAny(media: MediaType, ranges: readonly MediaRange[]): boolean {
  return ranges.some((r) => matchesRange(media, r));
}

/** `type/subtype; name=value` as the catalog wrote it, for messages. */
export function formatRange(range: MediaRange): string {
  let out = `${range.type}/${range.subtype}`;
  for (const [k, v] of range.params) out += `; ${k}=${v}`;
  return out;
}

export function isJsonType(media: MediaType): boolean {
  return (
    media.essence === 'application/json' || (media.type === 'application' && media.subtype.endsWith('+json'))
  );
}

export function isFormType(media: MediaType): boolean {
  return media.essence === 'multipart/form-data' || media.essence === 'application/x-www-form-urlencoded';
}

const TEXT_APPLICATION_TYPES = new Set([
  'application/json',
  'application/xml',
  'application/x-www-form-urlencoded',
  'application/javascript',
  'application/ecmascript',
  'application/x-ndjson',
  'application/yaml',
  'application/x-yaml',
  'application/csv',
  'application/graphql',
]);

/** Types whose content is text: text/*, JSON, XML, forms, scripts, YAML… */
export function isTextType(media: MediaType): boolean {
  return (
    media.type === 'text' ||
    TEXT_APPLICATION_TYPES.has(media.essence) ||
    media.subtype.endsWith('+json') ||
    media.subtype.endsWith('+xml')
  );
}

/** Declared names that mean the same format as the name `file-type` reports. */
const ALIASES: ReadonlyMap<string, string> = new Map([
  ['image/jpg', 'image/jpeg'],
  ['image/pjpeg', 'image/jpeg'],
  ['image/x-png', 'image/png'],
  ['application/x-gzip', 'application/gzip'],
  ['application/x-zip', 'application/zip'],
  ['application/x-zip-compressed', 'application/zip'],
  ['application/x-pdf', 'application/pdf'],
  ['application/x-dosexec', 'application/x-msdownload'],
  ['application/x-msdos-program', 'application/x-msdownload'],
  ['application/vnd.microsoft.portable-executable', 'application/x-msdownload'],
]);

export function canonicalType(essence: string): string {
  return ALIASES.get(essence) ?? essence;
}

/** Executable formats: refused under any declared type that does not say "executable". */
const EXECUTABLE_TYPES = new Set([
  'application/x-elf',
  'application/x-msdownload',
  'application/x-mach-binary',
  'application/x-executable',
  'application/x-sharedlib',
  'application/wasm',
  'application/java-vm',
  'application/vnd.android.package-archive',
]);

export function isExecutableType(essence: string): boolean {
  return EXECUTABLE_TYPES.has(canonicalType(essence));
}

/** ZIP-based formats `file-type` tells apart (by their entries); all of them are also application/zip. */
function isZipBased(mime: string): boolean {
  return (
    mime === 'application/zip' ||
    mime === 'application/java-archive' ||
    mime === 'application/vnd.android.package-archive' ||
    mime === 'application/epub+zip' ||
    mime.startsWith('application/vnd.openxmlformats-officedocument.') ||
    mime.startsWith('application/vnd.oasis.opendocument.')
  );
}

/** Formats `file-type` can recognise: a body declared as one of these must carry its signature. */
const VERIFIABLE: ReadonlySet<string> = supportedMimeTypes;

/** What the bytes of a body are. */
export interface DetectedType {
  /**
   * The format: from magic bytes when `magic`, else `application/json` (text starting with { or [),
   * `text/plain` (other text) or `application/octet-stream` (binary). `application/x-empty` for no bytes.
   */
  readonly mime: string;
  /** The mime comes from a magic number (`file-type`). */
  readonly magic: boolean;
  /** Valid UTF-8. */
  readonly utf8: boolean;
  /** Has NUL or other control characters than TAB, LF, FF, CR (so it is not text in any charset). */
  readonly binary: boolean;
}

/** Bytes `file-type` looks at: enough for every format it knows at a fixed offset, and bounded. */
const MAGIC_WINDOW = 64 * 1024;

/**
 * What the bytes are. `textExpected` (the declared type is a text type): text content is taken as text
 * without asking `file-type` — only binary content is then identified, to name it — which skips its cost
 * (and its false positives on text, such as "ID3…" read as MP3) on the common JSON and text bodies.
 */
export async function detectType(bytes: Uint8Array, textExpected = false): Promise<DetectedType> {
  return detectText(bytes, textExpected) ?? detectByMagic(bytes);
}

/**
 * detectType without a promise when `file-type` need not be asked: no bytes, or text where text is
 * expected (the common JSON and text bodies). null when it must be: then call detectByMagic.
 */
export function detectText(bytes: Uint8Array, textExpected = false): DetectedType | null {
  if (bytes.length === 0) return EMPTY;
  if (!textExpected) return null;
  const binary = hasBinaryControls(bytes);
  if (binary) return null;
  return {
    mime: startsLikeJson(bytes) ? 'application/json' : 'text/plain',
    magic: false,
    utf8: isUtf8(bytes),
    binary,
  };
}

const EMPTY: DetectedType = Object.freeze({
  mime: 'application/x-empty',
  magic: false,
  utf8: true,
  binary: false,
});

/** detectType asking `file-type` (after detectText returned null). */
export async function detectByMagic(bytes: Uint8Array): Promise<DetectedType> {
  const utf8 = isUtf8(bytes);
  const binary = hasBinaryControls(bytes);
  let found: string | undefined;
  try {
    found = (await fileTypeFromBuffer(bytes.subarray(0, MAGIC_WINDOW)))?.mime;
  } catch {
    found = undefined; // a malformed container: no verdict from magic bytes
  }
  if (found) return { mime: found, magic: true, utf8, binary };
  let mime = 'application/octet-stream';
  if (!binary) mime = startsLikeJson(bytes) ? 'application/json' : 'text/plain';
  return { mime, magic: false, utf8, binary };
}

/** 1 for the bytes that make content binary: controls other than TAB, LF, FF, CR, and DEL. */
const BINARY = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) BINARY[b] = b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d ? 0 : 1;
BINARY[0x7f] = 1;

/**
 * Any byte BINARY marks. Four bytes at a time: a word with no byte below 0x20 and none equal to 0x7f
 * (the exact "has a byte less than n" and "has a zero byte" tests, as 32-bit integer arithmetic) is
 * skipped; any other word is looked at byte by byte.
 */
export function hasBinaryControls(bytes: Uint8Array): boolean {
  const n = bytes.length;
  let i = 0;
  const head = Math.min(n, (4 - (bytes.byteOffset & 3)) & 3);
  for (; i < head; i++) if (BINARY[bytes[i] as number] === 1) return true;
  const words = (n - head) >>> 2;
  if (words > 0) {
    const w = new Int32Array(bytes.buffer, bytes.byteOffset + head, words);
    for (let k = 0; k < words; k++) {
      const x = w[k] as number;
      const del = x ^ 0x7f7f7f7f;
      if ((((x - 0x20202020) & ~x) | ((del - 0x01010101) & ~del)) & 0x80808080) {
        const o = head + 4 * k;
        if (
          BINARY[bytes[o] as number] === 1 ||
          BINARY[bytes[o + 1] as number] === 1 ||
          BINARY[bytes[o + 2] as number] === 1 ||
          BINARY[bytes[o + 3] as number] === 1
        )
          return true;
      }
    }
    i = head + 4 * words;
  }
  for (; i < n; i++) if (BINARY[bytes[i] as number] === 1) return true;
  return false;
}

function startsLikeJson(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length && i < 1024; i++) {
    const b = bytes[i] as number;
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    return b === 0x7b || b === 0x5b; // { [
  }
  return false;
}

/**
 * Declared vs actual. Returns null when the content may be what it claims, else why not:
 * - text types (text/*, JSON, XML, forms…) must be text: no NUL or control bytes, and valid UTF-8 unless
 *   a charset other than UTF-8 / US-ASCII is declared (JSON is always UTF-8);
 * - an executable (ELF, PE/MZ, Mach-O, wasm, Java class, APK) is refused unless declared as an executable;
 * - a type `file-type` can recognise (PNG, JPEG, GIF, PDF, ZIP, gzip…) must carry its signature; a generic
 *   application/zip matches every ZIP-based format and the other way round;
 * - other declared types (application/octet-stream, vendor types) cannot be checked and pass;
 * - multipart bodies are checked part by part, not as a whole.
 */
export function checkDeclaredType(declared: MediaType, detected: DetectedType): string | null {
  const claimed = canonicalType(declared.essence);
  if (declared.type === 'multipart' || detected.mime === 'application/x-empty') return null;
  if (isTextType(declared)) {
    const charset = declared.params.get('charset')?.toLowerCase();
    const needsUtf8 =
      isJsonType(declared) || charset === undefined || charset === 'utf-8' || charset === 'us-ascii';
    if (detected.binary || (needsUtf8 && !detected.utf8)) {
      const what = detected.magic ? detected.mime : needsUtf8 && !detected.binary ? 'not UTF-8' : 'binary';
      return `declared ${claimed} (text) but the content is ${what}`;
    }
    return null;
  }
  const actual = canonicalType(detected.mime);
  if (isExecutableType(actual) && !isExecutableType(claimed))
    return `declared ${claimed} but the content is an executable (${actual})`;
  if (VERIFIABLE.has(claimed)) {
    if (!detected.magic) return `declared ${claimed} but the content has no ${claimed} signature`;
    if (actual === claimed) return null;
    if (
      isZipBased(claimed) &&
      isZipBased(actual) &&
      (claimed === 'application/zip' || actual === 'application/zip')
    )
      return null;
    return `declared ${claimed} but the content is ${actual}`;
  }
  return null;
}
