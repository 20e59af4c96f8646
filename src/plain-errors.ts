// Our own words for the errors of the libraries under us (ioredis, grpc-js, sockets) and of our own
// quota breaker (src/quota/breaker.ts, src/net/reply-timer.ts), for
// logs, /readyz, `quota status` and `check`. People read "Redis is not connected", not "Stream isn't
// writeable and enableOfflineQueue options is false". The library's text stays available to the
// caller (log it as `cause`) but is never the message.

interface Rule {
  readonly test: RegExp;
  readonly say: (match: RegExpExecArray) => string;
}

const REDIS: readonly Rule[] = [
  {
    test: /Stream isn't writeable|enableOfflineQueue/i,
    say: () => 'Redis is not connected (reconnecting in the background)',
  },
  {
    test: /Connection is closed|Connection closed/i,
    say: () => 'the connection to Redis is closed (reconnecting in the background)',
  },
  { test: /Command timed out/i, say: () => 'Redis did not answer in time' },
  {
    test: /circuit open/i,
    say: () => 'Redis is considered down after repeated failures; retrying shortly',
  },
  {
    test: /circuit half-open/i,
    say: () => 'Redis is back: charges are let through a growing share at a time',
  },
  {
    test: /no reply from redis within (\d+) ms/i,
    say: (m) => `Redis did not answer within ${m[1]} ms`,
  },
  {
    test: /ECONNREFUSED\s*([\d.:[\]a-f]*)/i,
    say: (m) => `Redis refused the connection${m[1] ? ` at ${m[1]}` : ''}`,
  },
  { test: /ENOTFOUND|EAI_AGAIN/i, say: () => 'the Redis host name does not resolve' },
  { test: /CLUSTERDOWN/i, say: () => 'the Redis Cluster is down' },
  { test: /NOAUTH|WRONGPASS/i, say: () => 'Redis refused our credentials' },
  { test: /LOADING/i, say: () => 'Redis is still loading its data' },
  { test: /READONLY/i, say: () => 'Redis is a read-only replica (failover in progress?)' },
  { test: /OOM/i, say: () => 'Redis is out of memory' },
  { test: /not ready within (\d+) ms/i, say: (m) => `Redis was not ready within ${m[1]} ms` },
];

/** A quota store (Redis) failure in our words. */
export function plainStoreError(error: unknown): string {
  return plain(error, REDIS, 'the quota store failed');
}

/** A failed Check RPC (portcullis check) in our words; `server` is the address we called. */
export function plainRpcError(error: unknown, server: string): string {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const text = messageOf(error);
  if (code === 14 || /UNAVAILABLE/.test(text)) {
    if (/ECONNREFUSED|No connection established|connect/i.test(text)) {
      return `no portcullis is listening at ${server} (connection refused): start it, or pass --server`;
    }
    return `portcullis at ${server} is unavailable`;
  }
  if (code === 4 || /DEADLINE_EXCEEDED/.test(text))
    return `portcullis at ${server} did not answer in time (--timeout-ms)`;
  if (code === 12 || /UNIMPLEMENTED/.test(text)) return `${server} does not serve Envoy's Check API`;
  if (code === 8 || /RESOURCE_EXHAUSTED/.test(text)) return `${server} refused the request as too large`;
  return `the Check call to ${server} failed (${text.slice(0, 200)})`;
}

function plain(error: unknown, rules: readonly Rule[], fallback: string): string {
  const text = messageOf(error);
  for (const rule of rules) {
    const match = rule.test.exec(text);
    if (match) return rule.say(match);
  }
  return `${fallback} (${text.slice(0, 200)})`;
}

function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${typeof code === 'string' ? `${code} ` : ''}${error.message}`;
  }
  return String(error);
}
