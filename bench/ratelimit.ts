// envoyproxy/ratelimit as a peer in `make bench`: the Go service Envoy's own rate limit filter
// calls, installed with `go install` into .cache/bench/bin, run on the same Redis and pinned like
// portcullis, with the same two stacked limits (a per-minute and a daily fixed window per partner)
// as descriptors. The load generator calls its ShouldRateLimit exactly as it calls our Check.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadOfficialFiles } from '../test/contract/official-protos.js';

export const RATELIMIT_MODULE =
  'github.com/envoyproxy/ratelimit/src/service_cmd@v1.4.1-0.20260122083618-3fb702589d36';
export const SHOULD_RATE_LIMIT_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';
const BIN_DIR = resolve('.cache/bench/bin');
const BINARY = `${BIN_DIR}/service_cmd`;

/** The service binary, installed on first use; null (and why on stderr) when Go or the install fails. */
export function ratelimitBinary(): string | null {
  if (existsSync(BINARY)) return BINARY;
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
  } catch {
    process.stderr.write(
      'envoyproxy/ratelimit: skipped (Go is not installed: it is built with go install)\n',
    );
    return null;
  }
  process.stderr.write(`envoyproxy/ratelimit: go install ${RATELIMIT_MODULE} (once, into ${BIN_DIR})…\n`);
  try {
    mkdirSync(BIN_DIR, { recursive: true });
    execFileSync('go', ['install', RATELIMIT_MODULE], {
      env: { ...process.env, GOBIN: BIN_DIR },
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 15 * 60_000,
    });
    return BINARY;
  } catch (error: unknown) {
    const why = (error as { stderr?: Buffer }).stderr?.toString().trim().split('\n').slice(-3).join(' | ');
    process.stderr.write(`envoyproxy/ratelimit: skipped (go install failed: ${why ?? String(error)})\n`);
    return null;
  }
}

const PARTNER = 'mtls-co';

/** Writes the runtime folder (RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config/*.yaml); returns the env to run with. */
export function ratelimitEnv(
  dir: string,
  ports: { grpc: number; http: number; debug: number; metrics: number },
  redisUrl: string,
) {
  const root = resolve(dir);
  mkdirSync(`${root}/current/config`, { recursive: true });
  // The same limits as bench/catalog.yaml's two-fixed-windows plan, far above what a run reaches.
  writeFileSync(
    `${root}/current/config/bench.yaml`,
    [
      'domain: bench',
      'descriptors:',
      '  - key: partner',
      `    value: ${PARTNER}`,
      '    descriptors:',
      '      - key: window',
      '        value: minute',
      '        rate_limit: { unit: minute, requests_per_unit: 1000000000 }',
      '      - key: window',
      '        value: day',
      '        rate_limit: { unit: day, requests_per_unit: 1000000000 }',
      '',
    ].join('\n'),
  );
  const redis = new URL(redisUrl);
  return {
    PATH: process.env.PATH ?? '',
    RUNTIME_ROOT: root,
    RUNTIME_SUBDIRECTORY: 'current',
    RUNTIME_APPDIRECTORY: 'config',
    RUNTIME_WATCH_ROOT: 'false',
    RUNTIME_IGNOREDOTFILES: 'true',
    // Metrics kept in process and served for scraping, as portcullis does (the default, stdout,
    // would log every call).
    USE_STATSD: 'false',
    USE_PROMETHEUS: 'true',
    PROMETHEUS_ADDR: `127.0.0.1:${ports.metrics}`,
    LOG_LEVEL: 'warn',
    REDIS_SOCKET_TYPE: 'tcp',
    REDIS_TYPE: 'SINGLE',
    REDIS_URL: `${redis.hostname}:${redis.port}`,
    HOST: '127.0.0.1',
    PORT: String(ports.http),
    DEBUG_HOST: '127.0.0.1',
    DEBUG_PORT: String(ports.debug),
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: String(ports.grpc),
  };
}

/** gRPC-framed RateLimitRequests, encoded with Envoy's official protos: both windows of one partner. */
export function rateLimitPayload(): Buffer {
  const type = loadOfficialFiles(['envoy/service/ratelimit/v3/rls.proto']).lookupType(
    'envoy.service.ratelimit.v3.RateLimitRequest',
  );
  const message = type.fromObject({
    domain: 'bench',
    descriptors: ['minute', 'day'].map((window) => ({
      entries: [
        { key: 'partner', value: PARTNER },
        { key: 'window', value: window },
      ],
    })),
    hits_addend: 1,
  });
  const bytes = type.encode(message).finish();
  if ((type.decode(bytes) as unknown as { descriptors: unknown[] }).descriptors.length !== 2) {
    throw new Error('RateLimitRequest lost its descriptors in encoding');
  }
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  Buffer.from(bytes).copy(out, 5);
  return out;
}
