// The hand-written decision line is the line pino wrote for the same decision (same bytes but the
// time), valid JSON whatever the strings hold; it honours the logger's level, and an asynchronous
// destination gets a batch of lines (up to FLUSH_DELAY_MS) in one write, in order, with nothing left
// behind by flushAudit.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type TestContext, test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { Decision } from '../../src/decision.js';
import {
  type AuditEntry,
  audit,
  auditFields,
  createLogger,
  flushAudit,
} from '../../src/observability/audit.js';
import { FLUSH_DELAY_MS, FLUSH_LINES } from '../../src/observability/line-writer.js';
import type { Request } from '../../src/request.js';

/** The strings a destination is given, as given (no decoding). */
class RawCapture extends Writable {
  readonly chunks: string[] = [];
  constructor() {
    super({ decodeStrings: false });
  }
  override _write(chunk: string, _enc: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk);
    done();
  }
}

function request(over: Partial<Request> = {}): Request {
  return {
    requestId: 'r-1',
    method: 'POST',
    path: '/v1/orders',
    query: new Map(),
    host: 'api.example.com',
    scheme: 'https',
    headers: new Map([
      [':path', '/v1/orders?api_key=k'],
      ['content-type', 'application/json'],
      ['authorization', 'Bearer secret'],
      ['x-request-id', 'r-1'],
    ]),
    body: new Uint8Array(42),
    bodyTruncated: false,
    source: { address: '192.0.2.1', port: 1, principal: '', certificatePem: '' },
    sni: '',
    contextExtensions: new Map(),
    protocol: 'HTTP/2',
    ...over,
  };
}

const base = {
  decisionId: '4010c348-9b0e-4355-9dea-cf676ee8a847',
  requestId: 'r-1',
  route: 'orders',
  partner: 'acme',
  policyVersion: 'sha256:0123456789abcdef',
  reason: '',
};
const allow = {
  ...base,
  kind: 'allow',
  code: 'allowed',
  upstreamHeaders: [],
  removeHeaders: [],
  removeQueryParams: [],
  responseHeaders: [],
} as Decision;
const deny = {
  ...base,
  kind: 'deny',
  code: 'partner_not_allowed',
  detail: 'no',
  headers: [],
  reason: 'acme is not on the route',
} as Decision;

const entry = (over: Partial<AuditEntry>): AuditEntry => ({
  decision: allow,
  request: request(),
  latencyMs: 1.23456,
  policyName: 'example-2026-11',
  includeHeaders: false,
  ...over,
});

/** What the previous path wrote: the fields object through pino, with createLogger's options. */
function viaPino(e: AuditEntry): string {
  const out = new RawCapture();
  createLogger('info', out).info(auditFields(e), 'decision');
  return out.chunks.join('');
}

function handWritten(e: AuditEntry): string {
  const out = new RawCapture();
  audit(createLogger('info', out), e);
  return out.chunks.join('');
}

const TIME = /"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/;
const timeless = (line: string) => {
  assert.match(line, TIME);
  return line.replace(TIME, '"time":"T"');
};

const WEIRD = 'a "quoted" \\ back\nslash\ttab \u0001 é ü 日本 😀 \u2028 </script>';
const cases: Record<string, AuditEntry> = {
  'allow with content, dry run and headers': entry({
    decision: {
      ...allow,
      dryRun: 'rule_denied',
      content: { sha256: 'ab'.repeat(32), scan: 'clean' },
    } as Decision,
    includeHeaders: true,
  }),
  deny: entry({ decision: deny }),
  'no request (undecodable Check)': entry({ decision: deny, request: null }),
  'strings that need escaping': entry({
    decision: { ...deny, reason: WEIRD, partner: 'x"y', route: '' } as Decision,
    request: request({
      path: '/v1/ünï\\"cöde',
      host: 'h\u007f.example',
      headers: new Map([
        ['user-agent', WEIRD],
        ['x-odd', 'v'],
      ]),
    }),
    includeHeaders: true,
  }),
  'a long string (pino: JSON.stringify) with a lone surrogate': entry({
    decision: { ...deny, reason: `${'x'.repeat(120)}\ud800 and \udfff` } as Decision,
  }),
  'a latency that rounds': entry({ latencyMs: 0.0004 }),
};

for (const [name, e] of Object.entries(cases)) {
  test(`decision line, ${name}: the bytes pino wrote, but the time`, () => {
    const ours = handWritten(e);
    assert.equal(timeless(ours), timeless(viaPino(e)));
    assert.ok(ours.endsWith('}\n') && !ours.slice(0, -1).includes('\n'), 'one line');
    assert.ok(!/\p{Surrogate}/u.test(ours), 'no lone surrogate: UTF-8 encodes it losslessly');
    const parsed = JSON.parse(Buffer.from(ours, 'utf8').toString('utf8'));
    assert.equal(parsed.msg, 'decision');
    assert.equal(parsed.service, 'portcullis');
    assert.equal(parsed.level, 'info');
    assert.equal(parsed.reason, e.decision.reason);
  });
}

test('decision line: a short string with a lone surrogate is escaped (pino wrote it raw, lost as U+FFFD)', () => {
  const e = entry({ decision: { ...deny, reason: 'bad \ud83d end' } as Decision });
  const ours = handWritten(e);
  assert.ok(ours.includes('"reason":"bad \\ud83d end"'));
  const decode = (line: string) => JSON.parse(Buffer.from(line, 'utf8').toString('utf8'));
  assert.equal(decode(ours).reason, 'bad \ud83d end');
  assert.equal(decode(viaPino(e)).reason, 'bad \ufffd end');
  // Everything else is the same.
  const rest = (line: string) => ({ ...decode(line), reason: null, time: null });
  assert.deepEqual(rest(ours), rest(viaPino(e)));
});

test('decision line: the line of a decision with an error is pino’s, the error serialized', () => {
  const out = new RawCapture();
  audit(createLogger('info', out), entry({ error: new Error('exploded') }));
  const line = JSON.parse(out.chunks.join(''));
  assert.equal(line.msg, 'decision');
  assert.equal(line.err.message, 'exploded');
  assert.match(line.err.stack, /exploded/);
});

test('decision line: nothing below the level, and a level changed at run time is obeyed', () => {
  const out = new RawCapture();
  const logger = createLogger('warn', out);
  audit(logger, entry({}));
  assert.equal(out.chunks.length, 0);
  logger.level = 'info';
  audit(logger, entry({}));
  assert.equal(out.chunks.length, 1);
  logger.level = 'error';
  audit(logger, entry({}));
  assert.equal(out.chunks.length, 1);
});

/** An asynchronous sonic-boom on a temporary file, its writes recorded. */
async function asyncFile(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-audit-'));
  const file = join(dir, 'audit.jsonl');
  const dest = pino.destination({ dest: file, sync: false });
  t.after(async () => {
    // Ends once what was handed over is written.
    dest.end();
    await once(dest, 'close');
    rmSync(dir, { recursive: true, force: true });
  });
  await new Promise((resolve) => dest.once('ready', resolve));
  const writes: string[] = [];
  const write = dest.write.bind(dest);
  dest.write = (text: string) => {
    writes.push(text);
    return write(text);
  };
  /** The lines handed to the stream, in the order they were (the order they are written in). */
  const lines = () =>
    writes
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  /** The file once sonic-boom has written everything. */
  const read = async () => {
    while (!readFileSync(file, 'utf8').endsWith(writes.at(-1) ?? '')) await nextTurn();
    return readFileSync(file, 'utf8');
  };
  return { logger: createLogger('info', dest), writes, lines, read };
}

test('asynchronous destination: the lines of FLUSH_DELAY_MS, over several turns, are one write, in order', async (t) => {
  const { logger, writes, lines, read } = await asyncFile(t);
  for (const id of ['a', 'b', 'c'])
    audit(logger, entry({ decision: { ...allow, decisionId: id } as Decision }));
  assert.equal(writes.length, 0, 'held for the batch');
  await nextTurn();
  audit(logger, entry({ decision: { ...allow, decisionId: 'd' } as Decision }));
  assert.equal(writes.length, 0, 'a later turn joins the same batch');
  await sleep(FLUSH_DELAY_MS * 3);
  assert.equal(writes.length, 1);
  assert.deepEqual(
    lines().map((l) => l.decision_id),
    ['a', 'b', 'c', 'd'],
  );
  assert.equal(await read(), writes[0]);
  // The next batch re-arms the same timer.
  audit(logger, entry({ decision: { ...allow, decisionId: 'e' } as Decision }));
  await sleep(FLUSH_DELAY_MS * 3);
  assert.equal(writes.length, 2);
});

test('asynchronous destination: FLUSH_LINES waiting lines are written at once', async (t) => {
  const { logger, writes, lines } = await asyncFile(t);
  for (let i = 0; i < FLUSH_LINES; i++)
    audit(logger, entry({ decision: { ...allow, decisionId: `n${i}` } as Decision }));
  assert.equal(writes.length, 1, 'no wait for the timer');
  assert.equal(lines().length, FLUSH_LINES);
});

test("asynchronous destination: pino's own lines come after the decision lines logged before them", async (t) => {
  const { logger, writes, lines } = await asyncFile(t);
  audit(logger, entry({ decision: { ...allow, decisionId: 'first' } as Decision }));
  logger.warn('quota store failed');
  logger.child({ component: 'x' }).info('child line');
  audit(logger, entry({ decision: { ...allow, decisionId: 'after' } as Decision }));
  flushAudit(logger);
  assert.deepEqual(
    lines().map((l) => l.decision_id ?? l.msg),
    ['first', 'quota store failed', 'child line', 'after'],
  );
  assert.equal(writes.length, 4);
});

test('asynchronous destination: flushAudit hands the pending lines over at once; an error line keeps its place', async (t) => {
  const { logger, writes, lines } = await asyncFile(t);
  audit(logger, entry({ decision: { ...allow, decisionId: 'before' } as Decision }));
  audit(logger, entry({ decision: { ...deny, decisionId: 'failed' } as Decision, error: new Error('x') }));
  audit(logger, entry({ decision: { ...allow, decisionId: 'last' } as Decision }));
  flushAudit(logger);
  logger.info('stopped');
  // before (flushed ahead of the error line), failed (pino), last (flushAudit), stopped (pino).
  assert.equal(writes.length, 4);
  assert.deepEqual(
    lines().map((l) => l.decision_id ?? l.msg),
    ['before', 'failed', 'last', 'stopped'],
  );
  await sleep(FLUSH_DELAY_MS * 3); // the batch's timer finds nothing left
  assert.equal(writes.length, 4);
});
