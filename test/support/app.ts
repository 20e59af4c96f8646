// Starts the real portcullis app (gRPC + admin on port 0) for a test, with logs captured.
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { type App, type AppOptions, startApp } from '../../src/app.js';
import { SERVE_ENV, TRANSPORTS, type TransportName } from '../../src/config.js';
import { createLogger } from '../../src/observability/audit.js';
import { loadCatalogFile, parseCatalog } from '../../src/policy/load.js';

export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(JSON.parse(line));
    done();
  }
  decisions(): Record<string, unknown>[] {
    return this.lines.filter((l) => l.msg === 'decision');
  }
}

/** The pepper tests hash their API keys with. */
export const TEST_PEPPER = Buffer.from('test-pepper-test-pepper-test-pepper-0123');

export interface TestApp {
  readonly app: App;
  readonly address: string;
  readonly adminUrl: string;
  readonly logs: LogCapture;
}

/**
 * The transport the integration tier runs on: PORTCULLIS_TRANSPORT (http2 | grpc-js), else the
 * default. `make test` runs the tier once per transport; spawned servers read the same variable.
 */
export function testTransport(): TransportName | undefined {
  const name = process.env[SERVE_ENV.transport];
  if (!name) return undefined;
  if (!(TRANSPORTS as readonly string[]).includes(name)) throw new Error(`unknown transport ${name}`);
  return name as TransportName;
}

export async function startTestApp(
  t: TestContext,
  options: { catalogFile?: string; catalogText?: string } & Partial<AppOptions>,
): Promise<TestApp> {
  const catalog = options.catalogText
    ? parseCatalog(options.catalogText, 'inline.yaml')
    : await loadCatalogFile(options.catalogFile ?? 'examples/catalog.yaml');
  const logs = new LogCapture();
  const app = await startApp({
    grpcAddress: '127.0.0.1:0',
    adminAddress: '127.0.0.1:0',
    maxMessageBytes: 8 * 1024 * 1024,
    drainDelayMs: 0,
    shutdownGraceMs: 2000,
    logger: createLogger('info', logs),
    apiKeyPepper: TEST_PEPPER,
    transport: testTransport(),
    ...options,
    catalog,
  });
  t.after(() => app.stop());
  return { app, address: `127.0.0.1:${app.grpcPort}`, adminUrl: `http://127.0.0.1:${app.adminPort}`, logs };
}
