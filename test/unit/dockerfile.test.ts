// The Dockerfile cannot be built here (no Docker engine): check its structure instead.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

const lines = readFileSync('Dockerfile', 'utf8')
  .split('\n')
  .filter((l) => l.trim() && !l.trim().startsWith('#'));
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  bin: Record<string, string>;
  engines: { node: string };
};

test('multi-stage, on Node.js 20, production dependencies only in the final stage', () => {
  const froms = lines.filter((l) => l.startsWith('FROM '));
  assert.ok(froms.length >= 2, 'multi-stage');
  for (const from of froms) assert.match(from, /^FROM node:20[-.]/);
  const final = lines.slice(lines.lastIndexOf(froms.at(-1) ?? ''));
  assert.ok(
    !final.some((l) => /npm (ci|install)(?!.*--omit=dev)/.test(l)),
    'no dev install in the runtime stage',
  );
  assert.ok(lines.some((l) => l.includes('npm ci --omit=dev')));
});

test('runs as a non-root user, entry is node on the compiled CLI from package.json', () => {
  const user = lines.filter((l) => l.startsWith('USER ')).at(-1);
  assert.ok(user && !/USER (root|0)(\s|:|$)/.test(user), 'non-root USER');
  const entry = lines.find((l) => l.startsWith('ENTRYPOINT '));
  assert.equal(entry, `ENTRYPOINT ["node", "${pkg.bin.portcullis}"]`);
});

test('everything the runtime reads at start is copied: protos and the embedded catalog', () => {
  for (const path of ['protos', 'examples', 'package.json']) {
    assert.ok(
      lines.some((l) => (l.startsWith('COPY ') && l.includes(` ${path} `)) || l.endsWith(` ./${path}`)),
      path,
    );
    assert.ok(existsSync(path), `${path} exists`);
  }
  const ignored = readFileSync('.dockerignore', 'utf8').split('\n');
  for (const needed of ['protos', 'examples', 'src', 'package-lock.json'])
    assert.ok(!ignored.includes(needed), needed);
});
