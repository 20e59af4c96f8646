// The files a catalog names — JSON Schemas (routes[].content.json.schema) and JWKS files
// (issuers[].jwks.file) — decide as much as the catalog itself, so they are part of its version,
// watched with it, and compared by `policy diff`. Each is read once per load, through one cache, so
// the bytes compiled are the bytes hashed.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { CatalogReference } from './catalog.js';
import type { CatalogDocument } from './schema.js';

/** Reads each file once; an unreadable file is remembered as such (null). */
export class FileCache {
  private readonly files = new Map<string, string | null>();

  /** The text of `file`; throws what readFileSync throws (every time) when it cannot be read. */
  read(file: string): string {
    if (!this.files.has(file)) {
      try {
        this.files.set(file, readFileSync(file, 'utf8'));
      } catch (err: unknown) {
        this.files.set(file, null);
        throw err;
      }
    }
    const text = this.files.get(file);
    if (text === null || text === undefined) return readFileSync(file, 'utf8');
    return text;
  }

  /** The text of `file`, or null when it cannot be read. */
  tryRead(file: string): string | null {
    try {
      return this.read(file);
    } catch {
      return null;
    }
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Every file the document names, once, in a stable order (kind, then path as written). */
export function referencesOf(doc: CatalogDocument, dir: string, files: FileCache): CatalogReference[] {
  const found = new Map<string, { kind: CatalogReference['kind']; path: string }>();
  const add = (kind: CatalogReference['kind'], path: string | undefined) => {
    if (path !== undefined && !found.has(`${kind}\0${path}`)) found.set(`${kind}\0${path}`, { kind, path });
  };
  for (const iss of doc.issuers) if ('file' in iss.jwks) add('jwks', iss.jwks.file);
  for (const route of doc.routes) {
    add('schema', route.content?.json?.schema);
    for (const over of Object.values(route.content?.partners ?? {})) add('schema', over.json?.schema);
  }
  return [...found.values()]
    .sort((a, b) => (a.kind === b.kind ? (a.path < b.path ? -1 : 1) : a.kind < b.kind ? -1 : 1))
    .map(({ kind, path }) => {
      const file = resolve(dir, path);
      const text = files.tryRead(file);
      return { kind, path, file, sha256: text === null ? '' : sha256(text), text: text ?? '' };
    });
}

/**
 * `sha256:` + 16 hex digits over the catalog's bytes and, when it names files, each file's path (as
 * written) and content hash. A catalog that names no file keeps the hash of its bytes alone.
 */
export function catalogVersion(text: string, references: readonly CatalogReference[]): string {
  const hash = createHash('sha256').update(text);
  for (const ref of references) hash.update(`\n\0${ref.kind}\0${ref.path}\0${ref.sha256}`);
  return `sha256:${hash.digest('hex').slice(0, 16)}`;
}
