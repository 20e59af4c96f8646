// Form bodies: multipart/form-data and application/x-www-form-urlencoded, parsed by busboy from the
// in-memory body with per-part limits (count, size, declared types, file names). Every file part comes
// back with its bytes and declared type, for the magic check and the malware scan.
import { Buffer } from 'node:buffer';
import busboy from 'busboy';
import { formatRange, type MediaType, matchesAny, parseMediaType } from './media.js';
import { type ContentFailure, fail, type MultipartPolicy, type Outcome, ok } from './types.js';

export interface FormField {
  readonly name: string;
  readonly value: string;
}

export interface FormFile {
  readonly field: string;
  /** As sent (path included, to be refused); null for an application/octet-stream part without one. */
  readonly filename: string | null;
  /** The part's Content-Type essence; text/plain when it has none (RFC 7578 §4.4). */
  readonly declaredType: string;
  readonly bytes: Uint8Array;
}

export interface ParsedForm {
  readonly kind: 'multipart' | 'urlencoded';
  readonly fields: readonly FormField[];
  readonly files: readonly FormFile[];
  /**
   * Every multipart part, field or file, in body order, with its raw bytes: what the magic check and
   * the scan look at (a part without a file name is no less an upstream's file). Empty for urlencoded.
   */
  readonly parts: readonly FormFile[];
}

/** Limits busboy applies that the policy does not name. */
const MAX_PART_HEADERS = 32;
const MAX_FIELD_NAME_BYTES = 256;

const limits = (detail: string, reason: string): ContentFailure => ({
  code: 'multipart_limits_exceeded',
  detail,
  reason,
});
const invalid = (detail: string, reason: string): ContentFailure => ({
  code: 'multipart_invalid',
  detail,
  reason,
});

/**
 * Parses a form body. `contentType` is the request's Content-Type as sent (busboy reads the boundary
 * from it); `media` the same, parsed. Refuses a malformed body (no boundary, truncated, bad
 * percent-encoding, a part busboy would silently skip, a transfer-encoded part), a count or size over the
 * limits, a file name breaking the rules and a file part of a type the policy does not list.
 */
export function parseForm(
  contentType: string,
  media: MediaType,
  body: Uint8Array,
  policy: MultipartPolicy,
): Promise<Outcome<ParsedForm>> {
  const kind = media.essence === 'multipart/form-data' ? 'multipart' : 'urlencoded';
  const what = kind === 'multipart' ? 'multipart/form-data body' : 'form body';
  return new Promise((resolve) => {
    let settled = false;
    const settle = (result: Outcome<ParsedForm>) => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const refuse = (failure: ContentFailure) => settle(fail(failure));

    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: { 'content-type': contentType },
        preservePath: true,
        defCharset: 'utf8',
        defParamCharset: 'utf8',
        limits: {
          parts: policy.maxParts,
          fields: policy.maxParts,
          files: policy.maxParts,
          fieldSize: policy.maxPartBytes,
          fileSize: policy.maxPartBytes,
          fieldNameSize: MAX_FIELD_NAME_BYTES,
          headerPairs: MAX_PART_HEADERS,
        },
      });
    } catch (error: unknown) {
      refuse(
        invalid(`The ${what} cannot be read: ${busboyMessage(error)}.`, `busboy: ${busboyMessage(error)}`),
      );
      return;
    }

    const fields: FormField[] = [];
    const files: FormFile[] = [];
    // Part index (busboy emits 'file' and 'field' in body order) → the part, for `parts`.
    const byIndex: FormFile[] = [];
    let nextIndex = 0;
    const contents = kind === 'multipart' ? partContents(body, media.params.get('boundary') ?? '') : [];
    let pending = 0; // file parts whose bytes are still arriving
    let finished = false;
    const overCount = () =>
      refuse(
        limits(
          `The ${what} has more than ${policy.maxParts} parts.`,
          `over ${policy.maxParts} parts (${fields.length + files.length} read)`,
        ),
      );
    const maybeDone = () => {
      if (!finished || pending > 0 || settled) return;
      if (kind === 'multipart') {
        const boundary = media.params.get('boundary') ?? '';
        const declared = countDelimiters(body, boundary) - 1;
        if (declared > fields.length + files.length) {
          refuse(
            invalid(
              `The ${what} has a part without 'Content-Disposition: form-data' and a name.`,
              `${declared} parts delimited, ${fields.length + files.length} readable`,
            ),
          );
          return;
        }
      }
      settle(ok({ kind, fields, files, parts: byIndex.filter((p) => p !== undefined) }));
    };

    parser.on('field', (name, value, info) => {
      if (settled) return;
      if (info.nameTruncated)
        return refuse(limits(`A field name of the ${what} is too long.`, 'field name over the limit'));
      if (info.valueTruncated)
        return refuse(
          limits(
            `The value of field ${quote(name)} is larger than ${policy.maxPartBytes} bytes.`,
            `field ${quote(name)} over ${policy.maxPartBytes} bytes`,
          ),
        );
      const index = nextIndex++;
      if (kind === 'multipart') {
        // Busboy decodes a part without a file name into a string (with the charset it declares): the
        // type rules and the scan need its bytes as sent.
        const encoding = info.encoding.toLowerCase();
        if (encoding !== '7bit' && encoding !== '8bit' && encoding !== 'binary') {
          return refuse(
            invalid(
              `Part ${quote(name)} uses Content-Transfer-Encoding ${quote(encoding)}; send its bytes as they are.`,
              `transfer encoding ${encoding}`,
            ),
          );
        }
        const raw = contents[index];
        if (raw === undefined) {
          return refuse(invalid(`The ${what} is malformed.`, `no content found for part ${index}`));
        }
        const declaredType = info.mimeType.toLowerCase();
        // A part without a file name is a form field: text/plain (declared or by default) needs no
        // listing in multipart.types; any other declared type is checked like a file's.
        if (declaredType !== 'text/plain' && policy.allowedTypes.length > 0) {
          const parsed = parseMediaType(declaredType);
          if (!parsed.ok || !matchesAny(parsed.value, policy.allowedTypes)) {
            return refuse({
              code: 'media_type_not_allowed',
              detail: `Part ${quote(name)} is ${declaredType}; this route accepts parts of type ${policy.allowedTypes.map(formatRange).join(', ')} (or text fields).`,
              reason: `part ${quote(name)} (no file name) type ${declaredType} not allowed`,
            });
          }
        }
        byIndex[index] = { field: name, filename: null, declaredType, bytes: raw };
      }
      fields.push({ name, value });
    });

    parser.on('file', (field, stream, info) => {
      if (settled) {
        stream.resume();
        return;
      }
      const encoding = info.encoding.toLowerCase();
      if (encoding !== '7bit' && encoding !== '8bit' && encoding !== 'binary') {
        stream.resume();
        return refuse(
          invalid(
            `Part ${quote(field)} uses Content-Transfer-Encoding ${quote(encoding)}; send the file's bytes as they are.`,
            `transfer encoding ${encoding}`,
          ),
        );
      }
      const filename = info.filename ?? null;
      if (filename !== null) {
        const problem = checkFilename(filename, policy);
        if (problem) {
          stream.resume();
          return refuse({
            code: 'filename_invalid',
            detail: `The file name of part ${quote(field)} is not accepted: ${problem}. Send a plain file name.`,
            reason: `filename ${JSON.stringify(filename.slice(0, 200))}: ${problem}`,
          });
        }
      }
      const declaredType = info.mimeType.toLowerCase();
      if (policy.allowedTypes.length > 0) {
        const media = parseMediaType(declaredType);
        if (!media.ok || !matchesAny(media.value, policy.allowedTypes)) {
          stream.resume();
          return refuse({
            code: 'media_type_not_allowed',
            detail: `Part ${quote(field)} is ${declaredType}; this route accepts files of type ${policy.allowedTypes.map(formatRange).join(', ')}.`,
            reason: `part ${quote(field)} type ${declaredType} not allowed`,
          });
        }
      }
      pending++;
      const index = nextIndex++;
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        if (!settled) chunks.push(chunk);
      });
      stream.on('limit', () =>
        refuse(
          limits(
            `File part ${quote(field)} is larger than ${policy.maxPartBytes} bytes.`,
            `file part ${quote(field)} over ${policy.maxPartBytes} bytes`,
          ),
        ),
      );
      stream.on('close', () => {
        pending--;
        if (!settled) {
          const file = { field, filename, declaredType, bytes: Buffer.concat(chunks) };
          files.push(file);
          byIndex[index] = file;
        }
        maybeDone();
      });
    });

    parser.on('partsLimit', overCount);
    parser.on('filesLimit', overCount);
    parser.on('fieldsLimit', overCount);
    parser.on('error', (error: unknown) =>
      refuse(
        invalid(`The ${what} is malformed: ${busboyMessage(error)}.`, `busboy: ${busboyMessage(error)}`),
      ),
    );
    parser.on('close', () => {
      finished = true;
      maybeDone();
    });
    parser.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
}

/**
 * The raw content of each part, in order: from the blank line that ends its headers to the CRLF before
 * the next delimiter. Busboy validates the structure; this only finds the bytes it decoded.
 */
function partContents(body: Uint8Array, boundary: string): Buffer[] {
  if (!boundary) return [];
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const dash = Buffer.from(`--${boundary}`, 'latin1');
  const line = Buffer.from(`\r\n--${boundary}`, 'latin1');
  const delimiters: number[] = []; // where each "--boundary" starts
  if (buf.subarray(0, dash.length).equals(dash)) delimiters.push(0);
  for (let at = buf.indexOf(line); at !== -1; at = buf.indexOf(line, at + line.length))
    delimiters.push(at + 2);
  const contents: Buffer[] = [];
  for (let i = 0; i + 1 < delimiters.length; i++) {
    const start = delimiters[i] as number;
    const end = (delimiters[i + 1] as number) - 2;
    const headersEnd = buf.indexOf('\r\n\r\n', start);
    contents.push(
      headersEnd === -1 || headersEnd + 4 > end ? Buffer.alloc(0) : buf.subarray(headersEnd + 4, end),
    );
  }
  return contents;
}

/**
 * An application/x-www-form-urlencoded body with its escapes undone (`%XX` → the byte, `+` → space),
 * separators kept: what the upstream's decoder sees, for the scan. Bytes, not text, so nothing is lost.
 */
export function urlencodedBytes(body: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(body.length);
  let n = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as number;
    if (c === 0x2b) {
      out[n++] = 0x20;
    } else if (c === 0x25 && isHex(body[i + 1]) && isHex(body[i + 2])) {
      out[n++] = Number.parseInt(String.fromCharCode(body[i + 1] as number, body[i + 2] as number), 16);
      i += 2;
    } else {
      out[n++] = c;
    }
  }
  return out.subarray(0, n);
}

function isHex(c: number | undefined): boolean {
  return (
    c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66))
  );
}

/** Delimiter lines (`--boundary` at the start of the body or of a line), the closing one included. */
function countDelimiters(body: Uint8Array, boundary: string): number {
  if (!boundary) return 0;
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const dash = Buffer.from(`--${boundary}`, 'latin1');
  const line = Buffer.from(`\r\n--${boundary}`, 'latin1');
  let count = buf.subarray(0, dash.length).equals(dash) ? 1 : 0;
  let at = buf.indexOf(line);
  while (at !== -1) {
    count++;
    at = buf.indexOf(line, at + line.length);
  }
  return count;
}

// C0, DEL, C1 controls; bidirectional overrides and invisible characters that disguise an extension.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const DISGUISE = /[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/;

/**
 * Why a file name is refused, or null. A file name is a plain name: not empty, no path (no "/" or "\\",
 * no drive letter, no ":"), no "..", no control or bidirectional-override characters, no trailing dot or
 * space, at most `maxFilenameBytes` of UTF-8, and matching the route's pattern when it has one.
 */
export function checkFilename(
  name: string,
  policy: Pick<MultipartPolicy, 'maxFilenameBytes' | 'filenamePattern'>,
): string | null {
  if (name.length === 0) return 'it is empty';
  if (Buffer.byteLength(name, 'utf8') > policy.maxFilenameBytes)
    return `it is longer than ${policy.maxFilenameBytes} bytes`;
  if (CONTROL.test(name)) return 'it contains control characters';
  if (DISGUISE.test(name)) return 'it contains invisible or bidirectional-override characters';
  if (name.startsWith('/') || name.startsWith('\\')) return 'it is an absolute path';
  if (/^[A-Za-z]:/.test(name)) return 'it starts with a drive letter';
  if (name.includes('/') || name.includes('\\')) return 'it contains a path separator';
  if (name.includes('..')) return 'it contains ".."';
  if (name.includes(':')) return 'it contains ":"';
  if (/[. ]$/.test(name)) return 'it ends with a dot or a space';
  if (policy.filenamePattern && !policy.filenamePattern.test(name))
    return "it does not match this route's file name rule";
  return null;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

function busboyMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^Multipart: /, '').replace(/\.$/, '');
}
