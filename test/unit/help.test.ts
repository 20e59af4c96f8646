// Every help text of `portcullis`, rendered: expanded (no `${` left over from a template that was
// escaped by mistake) and complete (the top-level usage names every flag each command documents).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HELP, HELP_TOPICS, helpFor } from '../../src/cli/help.js';

const flagsIn = (text: string) => new Set(text.match(/--[a-z][a-z0-9-]*/g) ?? []);

/** The top-level usage, command by command: `serve`, `policy test`, `revoke`, … → its lines. */
function usageEntries(): Map<string, string> {
  const usage = HELP.slice(HELP.indexOf('Usage:'), HELP.indexOf('\n\n', HELP.indexOf('Usage:')));
  const entries = new Map<string, string>();
  let current = '';
  for (const line of usage.split('\n').slice(1)) {
    const start = /^ {2}portcullis ([a-z|]+)(?: (validate|test|diff|list|create|mint|status))?/.exec(line);
    if (start) {
      current = `${start[1]}${start[2] ? ` ${start[2]}` : ''}`;
      entries.set(current, line);
    } else entries.set(current, `${entries.get(current) ?? ''}\n${line}`);
  }
  return entries;
}

test('every help text is expanded: no ${ left in any of them', () => {
  for (const topic of [undefined, ...HELP_TOPICS]) {
    const text = helpFor(topic);
    assert.ok(text.length > 100, `help ${topic ?? '(top level)'} is there`);
    const at = text.indexOf('${');
    assert.equal(at, -1, `help ${topic ?? '(top level)'}: unexpanded at "${text.slice(at, at + 40)}"`);
  }
});

test('the top-level usage names every flag that each command help documents', () => {
  const usage = usageEntries();
  const usageFlags = (...names: string[]) =>
    new Set(names.flatMap((name) => [...flagsIn(usage.get(name) ?? '')]));
  const expectations: ReadonlyArray<[string, string[]]> = [
    ['serve', ['serve']],
    ['check', ['check']],
    ['policy', ['policy validate', 'policy test', 'policy diff']],
    ['key', ['key create']],
    ['token', ['token mint']],
    ['revoke', ['revoke|unrevoke', 'revoke list']],
    ['quota', ['quota status']],
  ];
  for (const [topic, entries] of expectations) {
    const listed = usageFlags(...entries);
    // --help is everywhere; the top-level usage does not repeat it.
    const documented = [...flagsIn(helpFor(topic))].filter((f) => f !== '--help');
    const missing = documented.filter((f) => !listed.has(f));
    assert.deepEqual(missing, [], `portcullis help ${topic} documents flags the top-level usage omits`);
  }
});

test('help names the flags the issue found missing from the top-level usage', () => {
  for (const flag of ['--timeout-ms', '--clamd-max-bytes', '--pepper-file', '--api-key-pepper-file']) {
    assert.ok(flagsIn(HELP).has(flag), flag);
  }
});
