// The code registry, docs/errors.md and the metrics labels must stay in step.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ALL_CODES, ALLOW_CODES, DENY_CODES, GrpcCode } from '../../src/errors.js';

const docs = readFileSync('docs/errors.md', 'utf8');
const grpcName = (code: number) => Object.entries(GrpcCode).find(([, n]) => n === code)?.[0];

test('every code has a section in docs/errors.md, and every section is a code', () => {
  const sections = [...docs.matchAll(/^## (\S+)$/gm)].map((m) => m[1]);
  assert.deepEqual([...sections].sort(), [...ALL_CODES].sort());
});

test('the docs table states the same HTTP and gRPC status as the registry', () => {
  for (const [code, spec] of Object.entries(DENY_CODES)) {
    const row = docs.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
    assert.ok(row, `table row for ${code}`);
    const cells = row.split('|').map((c) => c.trim());
    assert.equal(cells[2], String(spec.http), `${code} HTTP status`);
    assert.equal(cells[3], `${grpcName(spec.grpc)} (${spec.grpc})`, `${code} gRPC status`);
  }
  for (const code of ALLOW_CODES) assert.ok(docs.includes(`| \`${code}\` | — | OK (0) |`), code);
});

test('denials never use gRPC OK, and HTTP statuses are client or server errors', () => {
  for (const [code, spec] of Object.entries(DENY_CODES)) {
    assert.notEqual(spec.grpc, GrpcCode.OK, code);
    assert.ok(spec.http >= 400 && spec.http <= 599, code);
    assert.ok(spec.title.length > 0 && spec.detail.endsWith('.'), code);
  }
});

test('codes are snake_case and unique: they are metric label values and URL anchors', () => {
  assert.equal(new Set(ALL_CODES).size, ALL_CODES.length);
  for (const code of ALL_CODES) assert.match(code, /^[a-z][a-z_]*[a-z]$/);
});
