// YAML validated by a zod schema, every problem located: file, line, column and the path inside
// the document. Shared by the catalog loader and the policy-test fixture loader.
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { z } from 'zod';

export type DocPath = readonly (string | number)[];

export interface CatalogIssue {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly path: string;
  readonly message: string;
}

export function formatIssue(issue: CatalogIssue): string {
  return `${issue.file}:${issue.line}:${issue.column}: ${issue.path}: ${issue.message}`;
}

export type Locate = (path: DocPath, message: string) => CatalogIssue;

/**
 * Parses `text` (duplicate keys refused) and validates it with `schema`. Returns the data and a
 * `locate` for later checks, or every YAML or schema problem, located. `unionMessage` names the
 * expected forms of a union at a path, which zod cannot say usefully.
 */
export function parseYaml<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  unionMessage: (path: DocPath) => string,
): { ok: true; data: z.output<S>; locate: Locate } | { ok: false; issues: CatalogIssue[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((e) => {
        const pos = lines.linePos(e.pos[0]);
        return {
          file,
          line: pos.line,
          column: pos.col,
          path: '(yaml)',
          message: e.message.split('\n')[0] ?? '',
        };
      }),
    };
  }
  const locate: Locate = (path, message) => {
    const pos = lines.linePos(offsetOf(doc.contents, path));
    return { file, line: pos.line, column: pos.col, path: pathText(path), message };
  };
  const parsed = schema.safeParse(doc.toJS() ?? {}, { reportInput: true });
  if (!parsed.success) {
    return { ok: false, issues: parsed.error.issues.flatMap((i) => schemaIssues(i, locate, unionMessage)) };
  }
  return { ok: true, data: parsed.data, locate };
}

function schemaIssues(
  issue: z.core.$ZodIssue,
  locate: Locate,
  unionMessage: (path: DocPath) => string,
): CatalogIssue[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => locate([...path, k], `unknown key "${k}"${keyHint(path, k)}`));
    case 'invalid_type':
      return [locate(path, `expected ${issue.expected}, got ${describe(issue.input)}`)];
    case 'invalid_value': {
      const allowed = `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
      // Say why the algorithms people reach for first are missing.
      const hmac = path.at(-2) === 'algorithms' ? ' (HMAC and "none" are never accepted)' : '';
      return [locate(path, allowed + hmac)];
    }
    case 'invalid_key':
      return issue.issues.map((i) => locate(path, i.message));
    case 'invalid_union':
      return [locate(path, unionMessage(path))];
    default:
      return [locate(path, issue.message)];
  }
}

/** Where people look for a key that lives elsewhere. */
function keyHint(path: readonly (string | number)[], key: string): string {
  if (path.length === 2 && path[0] === 'routes' && key === 'limits') {
    return " (a route's limits go under quota.limits, with per: partner, route or source)";
  }
  return '';
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the key is required)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'a mapping' : typeof value;
}

/** Offset of the node at `path`, or of its nearest existing ancestor (e.g. for a missing key). */
export function offsetOf(root: unknown, path: DocPath): number {
  let node: unknown = root;
  let offset = rangeStart(root);
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key);
      if (!pair) return offset;
      // Point at the key: that is where a reader looks, for unknown keys and values alike.
      offset = rangeStart(pair.key);
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key];
      if (item === undefined) return offset;
      node = item;
      offset = rangeStart(item);
    } else {
      return offset;
    }
  }
  return offset;
}

function rangeStart(node: unknown): number {
  const range = (node as Node | null)?.range;
  return range ? range[0] : 0;
}

function pathText(path: DocPath): string {
  if (path.length === 0) return '(root)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}
