// Process settings (not policy): where to listen, what to load, how to log and stop.
// Flags win over environment variables, which win over these defaults.
import { fileURLToPath } from 'node:url';

export const DEFAULT_CATALOG = fileURLToPath(new URL('../examples/catalog.yaml', import.meta.url));
/** The example pepper, used only with the embedded example catalog. */
export const EXAMPLE_PEPPER_FILE = fileURLToPath(
  new URL('../examples/keys/api-key-pepper.txt', import.meta.url),
);
/** The pepper itself may come from this variable instead of a file (never logged). */
export const PEPPER_ENV = 'PORTCULLIS_API_KEY_PEPPER';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** The gRPC transports of the Check listener (src/envoy/listener.ts); the first is the default. */
export const TRANSPORTS = ['http2', 'grpc-js'] as const;
export type TransportName = (typeof TRANSPORTS)[number];

export interface ServeConfig {
  readonly catalogFile: string;
  readonly grpcAddress: string;
  /** gRPC transport of the Check listener: node:http2 (our framing) or grpc-js. */
  readonly transport: TransportName;
  readonly adminAddress: string;
  readonly logLevel: LogLevel;
  /**
   * Largest CheckRequest accepted. Envoy sends the buffered body (up to `max_request_bytes`)
   * plus headers in one message; grpc-js' default of 4 MiB would turn bigger ones into RPC errors.
   */
  readonly maxMessageBytes: number;
  /** After SIGTERM: how long health reports NOT_SERVING before we stop accepting calls. */
  readonly drainDelayMs: number;
  /** After that: how long in-flight calls may take before the server is closed anyway. */
  readonly shutdownGraceMs: number;
  /** File holding the API key pepper ('' = none; PORTCULLIS_API_KEY_PEPPER may hold it instead). */
  readonly apiKeyPepperFile: string;
  /** Redis for live revocations (and quotas): redis://[user:pass@]host:port[/db]. '' = none. */
  readonly redisUrl: string;
  /** Processes sharing the gRPC port (a primary serves the admin endpoints). 1 = this process. */
  readonly workers: number;
  /** clamd for malware scans: host:port or a unix socket path. '' = none. */
  readonly clamd: string;
  /** clamd's StreamMaxLength: larger content is refused as scan_too_large, never sent. */
  readonly clamdMaxBytes: number;
}

export const SERVE_DEFAULTS: ServeConfig = {
  catalogFile: DEFAULT_CATALOG,
  // Loopback: the Check service is plaintext and trusts what a CheckRequest says (a forged
  // `principal` would be charged to that partner). Envoy runs in the same pod; anything else must
  // be asked for explicitly.
  grpcAddress: '127.0.0.1:9001',
  transport: 'http2',
  adminAddress: '127.0.0.1:9090',
  logLevel: 'info',
  maxMessageBytes: 8 * 1024 * 1024,
  drainDelayMs: 0,
  shutdownGraceMs: 10_000,
  apiKeyPepperFile: '',
  redisUrl: '',
  workers: 1,
  clamd: '',
  clamdMaxBytes: 25 * 1024 * 1024,
};

export const SERVE_ENV = {
  catalogFile: 'PORTCULLIS_CONFIG',
  grpcAddress: 'PORTCULLIS_GRPC_ADDRESS',
  transport: 'PORTCULLIS_TRANSPORT',
  adminAddress: 'PORTCULLIS_ADMIN_ADDRESS',
  logLevel: 'PORTCULLIS_LOG_LEVEL',
  maxMessageBytes: 'PORTCULLIS_MAX_MESSAGE_BYTES',
  drainDelayMs: 'PORTCULLIS_DRAIN_DELAY_MS',
  shutdownGraceMs: 'PORTCULLIS_SHUTDOWN_GRACE_MS',
  apiKeyPepperFile: 'PORTCULLIS_API_KEY_PEPPER_FILE',
  redisUrl: 'PORTCULLIS_REDIS_URL',
  workers: 'PORTCULLIS_WORKERS',
  clamd: 'PORTCULLIS_CLAMD',
  clamdMaxBytes: 'PORTCULLIS_CLAMD_MAX_BYTES',
} as const satisfies Record<keyof ServeConfig, string>;

const LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Merges flags, env and defaults; throws an Error naming the bad setting. */
export function resolveServeConfig(
  flags: Partial<Record<keyof ServeConfig, string>>,
  env: NodeJS.ProcessEnv,
): ServeConfig {
  // An empty variable counts as unset: `FOO=` in a manifest should not mean 0 or "".
  const pick = (key: keyof ServeConfig): string | undefined =>
    flags[key] ?? (env[SERVE_ENV[key]] || undefined);
  const int = (key: keyof ServeConfig, min: number, max: number): number => {
    const text = pick(key);
    if (text === undefined) return SERVE_DEFAULTS[key] as number;
    const n = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
    if (!(n >= min && n <= max)) {
      throw new Error(`${key} (${SERVE_ENV[key]}) must be an integer from ${min} to ${max}, got "${text}"`);
    }
    return n;
  };
  const logLevel = (pick('logLevel') ?? SERVE_DEFAULTS.logLevel) as LogLevel;
  if (!LEVELS.includes(logLevel))
    throw new Error(`logLevel must be one of ${LEVELS.join(', ')}, got "${logLevel}"`);
  const transport = (pick('transport') ?? SERVE_DEFAULTS.transport) as TransportName;
  if (!TRANSPORTS.includes(transport))
    throw new Error(
      `transport (${SERVE_ENV.transport}) must be one of ${TRANSPORTS.join(', ')}, got "${transport}"`,
    );
  return {
    catalogFile: pick('catalogFile') ?? SERVE_DEFAULTS.catalogFile,
    transport,
    grpcAddress: address('grpcAddress', pick('grpcAddress') ?? SERVE_DEFAULTS.grpcAddress),
    adminAddress: address('adminAddress', pick('adminAddress') ?? SERVE_DEFAULTS.adminAddress),
    logLevel,
    maxMessageBytes: int('maxMessageBytes', 64 * 1024, 256 * 1024 * 1024),
    drainDelayMs: int('drainDelayMs', 0, 600_000),
    shutdownGraceMs: int('shutdownGraceMs', 0, 600_000),
    apiKeyPepperFile: pick('apiKeyPepperFile') ?? '',
    redisUrl: redisUrl(pick('redisUrl') ?? ''),
    workers: int('workers', 1, 64),
    clamd: clamdAddress(pick('clamd') ?? ''),
    clamdMaxBytes: int('clamdMaxBytes', 1024, 4 * 1024 * 1024 * 1024),
  };
}

function clamdAddress(value: string): string {
  if (value !== '' && !value.startsWith('/') && !/^(\[[0-9a-fA-F:.]+\]|[^:\s/]+):\d{1,5}$/.test(value)) {
    throw new Error(
      `clamd (PORTCULLIS_CLAMD) must be host:port or an absolute unix socket path, got "${value}"`,
    );
  }
  return value;
}

function redisUrl(value: string): string {
  if (value !== '' && !/^rediss?:\/\/[^\s]+$/.test(value)) {
    throw new Error(
      `redisUrl (PORTCULLIS_REDIS_URL) must be redis://host:port or rediss://host:port, got "${value}"`,
    );
  }
  return value;
}

function address(key: string, value: string): string {
  const port = Number(value.slice(value.lastIndexOf(':') + 1));
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(value) || port > 65535) {
    throw new Error(`${key} must be host:port or [ipv6]:port, got "${value}"`);
  }
  return value;
}

export function splitHostPort(value: string): { host: string; port: number } {
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(value.slice(colon + 1)) };
}

/** The OTLP/HTTP traces endpoint, from the standard variables; '' = tracing off. */
export function otlpEndpoint(env: NodeJS.ProcessEnv): string {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (traces) return traces;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return base ? `${base.replace(/\/$/, '')}/v1/traces` : '';
}
