// Malware scanning against a real clamd (started by the test, EICAR-only signature database): the
// ClamdScanner on its own (verdicts, cache, limits, concurrency, failures) and inspectCheap + inspectScan
// end to end (a raw body, a JSON field, a multipart file part).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  type ContentRequest,
  inspectCheap,
  inspectScan,
  type ScanResult,
} from '../../src/content/inspect.js';
import { parseMediaRange } from '../../src/content/media.js';
import { ClamdScanner, type ClamdScannerOptions, type ScanVerdict } from '../../src/content/scanner.js';
import type { ContentPolicy, ScanPolicy } from '../../src/content/types.js';
import { type ClamdServer, EICAR, EICAR_SIGNATURE, startClamd } from '../support/clamd.js';

const MiB = 1024 * 1024;
const soon = (ms = 5000) => Date.now() + ms;

function scannerFor(clamd: ClamdServer, over: Partial<ClamdScannerOptions> = {}): ClamdScanner {
  return new ClamdScanner({
    address: { host: clamd.host, port: clamd.port },
    maxBytes: clamd.streamMaxBytes,
    timeoutMs: 5000,
    ...over,
  });
}

const SCAN: ScanPolicy = { types: [], onError: 'deny', timeoutMs: 5000, maxBytes: 2 * MiB };

function policy(over: Partial<ContentPolicy> = {}): ContentPolicy {
  return {
    maxBodyBytes: 4 * MiB,
    allowedTypes: [],
    bodyRequiredMethods: new Set(['POST']),
    bodyForbiddenMethods: new Set(['GET']),
    onTruncated: 'deny',
    magic: true,
    contentEncodings: [],
    json: { maxDepth: 32, maxKeys: 1000, maxStringLength: MiB, maxBytes: MiB, duplicateKeys: 'deny' },
    digest: null,
    multipart: { maxParts: 10, maxPartBytes: MiB, allowedTypes: [], maxFilenameBytes: 255 },
    scan: SCAN,
    ...over,
  };
}

function post(type: string, body: Uint8Array | string): ContentRequest {
  return {
    method: 'POST',
    headers: new Map([['content-type', type]]),
    body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
    bodyTruncated: false,
  };
}

/** inspectCheap (must pass), then inspectScan. */
async function inspect(
  request: ContentRequest,
  scanner: ClamdScanner,
  p: ContentPolicy = policy(),
  deadlineMs = soon(),
): Promise<ScanResult> {
  const cheap = await inspectCheap(request, p);
  assert.ok(cheap.ok, JSON.stringify(!cheap.ok && cheap.failure));
  return inspectScan(cheap.value, p, scanner, deadlineMs);
}

function assertInfected(v: ScanVerdict): void {
  assert.equal(v.verdict, 'infected', JSON.stringify(v));
  if (v.verdict === 'infected') assert.ok(v.signature.startsWith(EICAR_SIGNATURE), v.signature);
}

describe('ClamdScanner with a running clamd', () => {
  let clamd: ClamdServer;
  before(async () => {
    clamd = await startClamd();
  });
  after(() => clamd.close());

  test('EICAR as raw bytes → infected, over TCP and over the unix socket', async () => {
    assertInfected(await scannerFor(clamd).scan(EICAR, soon()));
    assertInfected(await scannerFor(clamd, { address: { path: clamd.socketPath } }).scan(EICAR, soon()));
  });

  test('a clean file → clean', async () => {
    const v = await scannerFor(clamd).scan(Buffer.from('%PDF-1.7\nnothing to see here\n%%EOF\n'), soon());
    assert.deepEqual(v, { verdict: 'clean' });
  });

  test('the same clean payload twice: the second is a cache hit, clamd is not asked', async () => {
    const scanner = scannerFor(clamd);
    const payload = randomBytes(64 * 1024);
    assert.deepEqual(await scanner.scan(payload, soon()), { verdict: 'clean' });
    assert.deepEqual(await scanner.scan(payload, soon()), { verdict: 'clean', cached: true });
    const stats = scanner.stats();
    assert.equal(stats.requests, 2);
    assert.equal(stats.clamdScans, 1);
    assert.equal(stats.cacheHits, 1);
    assert.equal(stats.outcomes.clean, 2);
    assert.equal(stats.latency.count, 1);
  });

  test('infected verdicts are not cached', async () => {
    const scanner = scannerFor(clamd);
    assertInfected(await scanner.scan(EICAR, soon()));
    assertInfected(await scanner.scan(EICAR, soon()));
    assert.equal(scanner.stats().clamdScans, 2);
    assert.equal(scanner.stats().cacheHits, 0);
  });

  test('a body over StreamMaxLength → too_large, without sending it', async () => {
    const scanner = scannerFor(clamd);
    const v = await scanner.scan(Buffer.alloc(clamd.streamMaxBytes + 1, 0x61), soon());
    assert.equal(v.verdict, 'too_large');
    assert.equal(scanner.stats().clamdScans, 0);
    assert.deepEqual(await scanner.scan(Buffer.alloc(clamd.streamMaxBytes, 0x62), soon()), {
      verdict: 'clean',
    });
  });

  test('a scanner configured above clamd’s StreamMaxLength still gets too_large (clamd says so), never clean', async () => {
    const scanner = scannerFor(clamd, { maxBytes: 8 * MiB });
    const v = await scanner.scan(Buffer.alloc(3 * MiB, 0x63), soon());
    assert.equal(v.verdict, 'too_large', JSON.stringify(v));
    assert.equal(scanner.stats().clamdScans, 1);
  });

  test('concurrency bound: 8 parallel scans with a limit of 2, never more than 2 in flight', async () => {
    const scanner = scannerFor(clamd, { maxConcurrent: 2 });
    const payloads = Array.from({ length: 8 }, () => randomBytes(256 * 1024));
    const verdicts = await Promise.all(payloads.map((p) => scanner.scan(p, soon(20_000))));
    assert.deepEqual(
      verdicts.map((v) => v.verdict),
      Array(8).fill('clean'),
    );
    const stats = scanner.stats();
    assert.equal(stats.maxInFlight, 2, 'the bound was reached and never exceeded');
    assert.equal(stats.clamdScans, 8);
    assert.equal(stats.inFlight, 0);
    assert.equal(stats.queued, 0);
  });

  test('ping answers true', async () => {
    assert.equal(await scannerFor(clamd).ping(), true);
  });

  test('events: one call per verdict, with the round trip', async () => {
    const seen: [string, boolean][] = [];
    const scanner = scannerFor(clamd, { events: { scanned: (v, _ms, cached) => seen.push([v, cached]) } });
    const payload = randomBytes(1024);
    await scanner.scan(payload, soon());
    await scanner.scan(payload, soon());
    await scanner.scan(EICAR, soon());
    assert.deepEqual(seen, [
      ['clean', false],
      ['clean', true],
      ['infected', false],
    ]);
  });

  test('scan latency of a 1 MiB clean body (reported, not asserted)', async (t) => {
    const scanner = scannerFor(clamd, { cache: null });
    const ms: number[] = [];
    for (let i = 0; i < 7; i++) {
      const started = performance.now();
      assert.deepEqual(await scanner.scan(randomBytes(MiB), soon()), { verdict: 'clean' });
      ms.push(performance.now() - started);
    }
    ms.sort((a, b) => a - b);
    t.diagnostic(
      `1 MiB clean scan: median ${ms[3]?.toFixed(1)} ms (min ${ms[0]?.toFixed(1)}, max ${ms[6]?.toFixed(1)})`,
    );
  });
});

describe('content inspection end to end with clamd', () => {
  let clamd: ClamdServer;
  before(async () => {
    clamd = await startClamd();
  });
  after(() => clamd.close());

  test('EICAR as a raw body → malware_detected; the signature is in the reason, not the detail', async () => {
    const r = await inspect(post('application/octet-stream', EICAR), scannerFor(clamd));
    assert.ok(!r.ok);
    assert.equal(r.failure.code, 'malware_detected');
    assert.match(r.failure.reason, new RegExp(`^${EICAR_SIGNATURE.replace(/\./g, '\\.')}.* in body`));
    assert.ok(!r.failure.detail.includes(EICAR_SIGNATURE));
    assert.equal(r.report.verdict, 'infected');
  });

  test('EICAR inside a JSON string field → malware_detected (found in the unescaped strings)', async () => {
    const body = JSON.stringify({ order: 42, attachment: EICAR.toString('latin1') });
    assert.ok(
      !body.includes(EICAR.toString('latin1')),
      'escaping changed the bytes: the raw body alone hides it',
    );
    const r = await inspect(post('application/json', body), scannerFor(clamd));
    assert.ok(!r.ok);
    assert.equal(r.failure.code, 'malware_detected');
    assert.match(r.failure.reason, / in body \(JSON strings\)/);
    assert.deepEqual(
      r.report.targets.map((t) => [t.name, t.verdict]),
      [
        ['body', 'clean'],
        ['body (JSON strings)', 'infected'],
      ],
    );
  });

  test('EICAR in a multipart file part → malware_detected, naming the part', async () => {
    const boundary = 'xYzZY';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nsee attached\r\n`),
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="upload"; filename="invoice.txt"\r\nContent-Type: text/plain\r\n\r\n`,
      ),
      EICAR,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const r = await inspect(post(`multipart/form-data; boundary=${boundary}`, body), scannerFor(clamd));
    assert.ok(!r.ok);
    assert.equal(r.failure.code, 'malware_detected');
    assert.equal(
      r.failure.detail,
      'The file in part "upload" ("invoice.txt") was refused by the malware scan.',
    );
  });

  test('a clean file → clean, with what the audit line needs', async () => {
    const pdf = Buffer.from('%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n');
    const r = await inspect(post('application/pdf', pdf), scannerFor(clamd));
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.value.verdict, 'clean');
    assert.equal(r.value.targets.length, 1);
    assert.equal(r.value.targets[0]?.bytes, pdf.length);
    assert.match(r.value.targets[0]?.sha256 ?? '', /^[0-9a-f]{64}$/);
  });

  test('only the listed types are scanned: EICAR as text/plain on a route scanning PDFs is not scanned', async () => {
    const scanner = scannerFor(clamd);
    const p = policy({ scan: { ...SCAN, types: [parseMediaRange('application/pdf')] } });
    const r = await inspect(post('text/plain', EICAR), scanner, p);
    assert.ok(r.ok);
    assert.equal(r.value.verdict, 'not_scanned');
    assert.equal(scanner.stats().requests, 0);
  });

  test('a body over the scan limit → scan_too_large, before clamd is asked', async () => {
    const scanner = scannerFor(clamd);
    const p = policy({ scan: { ...SCAN, maxBytes: 1024 } });
    const r = await inspect(post('application/octet-stream', Buffer.alloc(2048, 0x61)), scanner, p);
    assert.ok(!r.ok);
    assert.equal(r.failure.code, 'scan_too_large');
    assert.equal(scanner.stats().requests, 0);
  });
});

describe('clamd as the witness', () => {
  test('clamd’s own log shows one scan for a payload sent twice', async (t) => {
    const clamd = await startClamd(t);
    const scanner = scannerFor(clamd);
    const payload = randomBytes(64 * 1024);
    await scanner.scan(payload, soon());
    await scanner.scan(payload, soon());
    // A last scan, sequenced after the others: once clamd has logged it, it has logged what came before.
    assertInfected(await scanner.scan(EICAR, soon()));
    for (let i = 0; i < 250 && !/FOUND$/m.test(clamd.output()); i++) await sleep(20);
    assert.equal(clamd.scansLogged(), 2, clamd.output());
  });
});

describe('clamd failures', () => {
  test('clamd killed → an error verdict (connection refused); the route decides: deny or let through', async (t) => {
    const clamd = await startClamd(t);
    const scanner = scannerFor(clamd);
    await clamd.kill();
    const v = await scanner.scan(EICAR, soon());
    assert.equal(v.verdict, 'error');
    if (v.verdict === 'error') assert.match(v.reason, /ECONNREFUSED/);

    const denied = await inspect(post('application/pdf', Buffer.from('%PDF-1.7\n%%EOF\n')), scanner);
    assert.ok(!denied.ok);
    assert.equal(denied.failure.code, 'scan_unavailable');
    assert.match(denied.failure.reason, /ECONNREFUSED/);
    assert.ok(!denied.failure.detail.includes('ECONNREFUSED'));

    const allowed = await inspect(
      post('application/pdf', Buffer.from('%PDF-1.7\n%%EOF\n')),
      scanner,
      policy({ scan: { ...SCAN, onError: 'allow' } }),
    );
    assert.ok(allowed.ok);
    assert.equal(allowed.value.verdict, 'error_allowed');
    assert.match(allowed.value.note, /ECONNREFUSED/);
  });

  test('clamd stalled (SIGSTOP) → the scan resolves with an error by its deadline', {
    timeout: 15_000,
  }, async (t) => {
    const clamd = await startClamd(t);
    const scanner = scannerFor(clamd, { maxConcurrent: 1 });
    clamd.stop();
    t.after(() => clamd.cont());
    // The connection is accepted by the kernel; nothing ever answers. The second scan waits for the
    // only slot, and its own (earlier) deadline passes while the first still holds it.
    const [first, queued] = await Promise.all([
      scanner.scan(randomBytes(4096), soon(800)),
      scanner.scan(randomBytes(4096), soon(200)),
    ]);
    assert.equal(first.verdict, 'error');
    if (first.verdict === 'error') assert.match(first.reason, /timed out after \d+ ms/);
    assert.equal(queued.verdict, 'error');
    if (queued.verdict === 'error') assert.match(queued.reason, /waiting for one of 1 scan slots/);
    const stats = scanner.stats();
    assert.equal(stats.queueTimeouts, 1);
    assert.equal(stats.inFlight, 0);

    // Through inspectScan, the Check deadline bounds it the same way: the route's onError answers.
    const r = await inspect(
      post('application/pdf', Buffer.from('%PDF-1.7\n%%EOF\n')),
      scanner,
      policy(),
      soon(300),
    );
    assert.ok(!r.ok);
    assert.equal(r.failure.code, 'scan_unavailable');

    // Resumed, it answers again.
    clamd.cont();
    assertInfected(await scanner.scan(EICAR, soon()));
  });

  test('a deadline already passed → an error verdict without connecting', async (t) => {
    const clamd = await startClamd(t);
    const scanner = scannerFor(clamd);
    const v = await scanner.scan(EICAR, Date.now() - 1);
    assert.deepEqual(v, { verdict: 'error', reason: 'no time left before the deadline' });
    assert.equal(scanner.stats().clamdScans, 0);
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
