// `portcullis serve` as a real child process for integration tests (overload, Redis outages):
// free ports, the "serving" line parsed for them, its warnings kept, killed after the test; and
// small readers of Check answers and /metrics.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OfficialCheckResponse } from './official-client.js';

export const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
export const PEPPER = 'overload-test-pepper-0123456789abcdef-0123';
export const principal = (partner: string) => `spiffe://partners.example.com/${partner}`;

export interface Serve {
  readonly address: string;
  readonly adminPort: number;
  readonly child: ChildProcess;
  /** The last lines it logged, for failure messages. */
  tail(): string;
  /** Its first warnings and errors (at most 20). */
  warnings(): string;
  exited(): boolean;
}

export interface ServeOptions {
  /** Passed as --redis-url; without it the quotas live in the process. */
  readonly redisUrl?: string;
  /** Called with every JSON line it logs, from the first one on. */
  readonly onLog?: (entry: Record<string, unknown>) => void;
}

/** `portcullis serve` on free ports serving `catalog` (the text); resolves once it logs "serving". */
export async function startServe(t: TestContext, catalog: string, redisUrl: string): Promise<Serve> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-serve-'));
  const file = join(dir, 'catalog.yaml');
  writeFileSync(file, catalog);
  try {
    return await startServeFile(t, file, { redisUrl });
  } finally {
    // Registered after the process's own clean-up, so it runs once the process is gone.
    t.after(() => rmSync(dir, { recursive: true, force: true }));
  }
}

/** `portcullis serve --config FILE` on free ports; resolves once it logs "serving". Killed after the test. */
export async function startServeFile(
  t: TestContext,
  file: string,
  options: ServeOptions = {},
): Promise<Serve> {
  const child = spawn(
    process.execPath,
    [
      ...CLI,
      'serve',
      '--config',
      file,
      '--grpc-address',
      '127.0.0.1:0',
      '--admin-address',
      '127.0.0.1:0',
      ...(options.redisUrl === undefined ? [] : ['--redis-url', options.redisUrl]),
      '--drain-delay-ms',
      '0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORTCULLIS_API_KEY_PEPPER: PEPPER } },
  );
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  t.after(async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await once(child, 'exit').catch(() => {});
      clearTimeout(timer);
    }
  });
  const lines: string[] = [];
  const warnings: string[] = [];
  const tail = () => lines.slice(-20).join('\n');
  child.stderr?.on('data', (chunk: Buffer) => lines.push(chunk.toString()));
  const serving = new Promise<Record<string, unknown>>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on('line', (line) => {
      lines.push(line);
      if (lines.length > 200) lines.splice(0, 100);
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        options.onLog?.(entry);
        if (entry.msg === 'serving') resolve(entry);
        if ((entry.level === 'warn' || entry.level === 'error') && warnings.length < 20) warnings.push(line);
      } catch {
        // not JSON: kept in the tail
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited (${code}) before serving:\n${tail()}`)));
  });
  const timeout = sleep(30_000).then(() => {
    throw new Error(`serve did not log "serving" within 30 s:\n${tail()}`);
  });
  const entry = await Promise.race([serving, timeout]);
  return {
    address: `127.0.0.1:${entry.grpc_port}`,
    adminPort: Number(entry.admin_port),
    child,
    tail,
    warnings: () => warnings.join('\n'),
    exited: () => exited,
  };
}

export const codeOf = (res: OfficialCheckResponse) => res.dynamic_metadata?.fields?.code?.stringValue ?? '?';
export const headers = (res: OfficialCheckResponse) =>
  Object.fromEntries(
    (res.denied_response?.headers ?? res.ok_response?.headers ?? []).map((h) => [
      h.header.key,
      h.header.value,
    ]),
  );

export function tally(codes: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const code of codes) out[code] = (out[code] ?? 0) + 1;
  return out;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

export async function adminJson(port: number, path: string): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return res.json();
}

export async function metricsText(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** Sum of a counter's samples whose labels contain every `label="value"` given. */
export function counter(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}
