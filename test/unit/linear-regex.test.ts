// Issue 12, finding 9: catalog-supplied regular expressions run in linear time (RE2). The file name
// rule and JSON Schema patterns that backtrack exponentially in a RegExp are judged at once; patterns
// RE2 cannot run are refused when the catalog loads, at their file, line and path.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { compileSchema } from '../../src/content/json.js';
import { checkFilename } from '../../src/content/multipart.js';
import { compileContent } from '../../src/policy/content.js';
import { CatalogError, parseCatalog } from '../../src/policy/load.js';

const EVIL = '^([A-Za-z0-9]+[ _-]?)*\\.pdf$';
const EVIL_NAME = `${'a'.repeat(31)}!`;

/** CPU milliseconds (user + system) spent in `fn`: a CPU bound, not wall time. */
function cpuMs(fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

describe('finding 9: linear-time catalog patterns', () => {
  test('the pathological filename is judged in under 50 ms of CPU', () => {
    const form = compileContent({ multipart: { filename_pattern: EVIL } }, '.').multipart;
    assert.ok(form);
    assert.equal(checkFilename('report.pdf', form), null); // warm up the engine
    let verdict: string | null = null;
    const ms = cpuMs(() => {
      verdict = checkFilename(EVIL_NAME, form);
    });
    assert.equal(verdict, "it does not match this route's file name rule");
    assert.ok(ms < 50, `${ms.toFixed(1)} ms of CPU`);
  });

  test('JSON Schema pattern and patternProperties run on RE2: a backtracking bomb is judged at once', () => {
    const schema = compileSchema(
      {
        type: 'object',
        properties: { sku: { type: 'string', pattern: '^(a+)+$' } },
        patternProperties: { '^(x+x+)+y$': { type: 'integer' } },
      },
      'bomb.json',
    );
    schema.validate({ sku: 'aaa', xxy: 1 }); // warm up
    let errors: readonly { pointer: string }[] = [];
    const bomb = `${'a'.repeat(40)}!`;
    const key = `${'x'.repeat(40)}`;
    const ms = cpuMs(() => {
      errors = schema.validate({ sku: bomb, [key]: 'not checked: the key does not match' })?.errors ?? [];
    });
    assert.deepEqual(
      errors.map((e) => e.pointer),
      ['/sku'],
    );
    assert.ok(ms < 50, `${ms.toFixed(1)} ms of CPU`);
  });

  test('a file name pattern RE2 cannot run is refused at load, at its file, line and path', () => {
    const text = [
      'routes:',
      '  - name: uploads',
      '    content:',
      '      multipart:',
      "        filename_pattern: '^(\\w+)\\1\\.pdf$'",
    ].join('\n');
    assert.throws(
      () => parseCatalog(text, 'catalog.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof CatalogError);
        const [issue] = err.issues;
        assert.equal(err.issues.length, 1);
        assert.equal(issue?.file, 'catalog.yaml');
        assert.equal(issue?.line, 5);
        assert.equal(issue?.path, 'routes[0].content.multipart.filename_pattern');
        assert.match(
          issue?.message ?? '',
          /not a linear-time \(RE2\) regular expression: invalid escape sequence/,
        );
        return true;
      },
    );
  });

  test('a JSON Schema pattern RE2 cannot run is refused at load, at the json.schema key', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-re2-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(
      join(dir, 'order.json'),
      JSON.stringify({ type: 'object', properties: { sku: { type: 'string', pattern: '^(?=A)[A-Z]+$' } } }),
    );
    const text = [
      'routes:',
      '  - name: orders',
      '    content:',
      '      json:',
      '        schema: order.json',
    ].join('\n');
    assert.throws(
      () => parseCatalog(text, join(dir, 'catalog.yaml')),
      (err: unknown) => {
        assert.ok(err instanceof CatalogError);
        const [issue] = err.issues;
        assert.equal(issue?.line, 5);
        assert.equal(issue?.path, 'routes[0].content.json.schema');
        assert.match(
          issue?.message ?? '',
          /"\^\(\?=A\)\[A-Z\]\+\$" is not a linear-time \(RE2\) regular expression/,
        );
        return true;
      },
    );
  });
});
