// Every help text of the `portcullis` command, in one module: `help.test.ts` renders each one and
// checks it is complete (every flag the command parses) and expanded (no `${` left over).
import { PEPPER_ENV, SERVE_DEFAULTS, SERVE_ENV } from '../config.js';
import { DEFAULT_CLOCK } from '../policy-tools/default-clock.js';

export const HELP = `portcullis — Envoy ext_authz sidecar for partner APIs

Usage:
  portcullis serve [--config FILE] [--grpc-address HOST:PORT] [--transport http2|grpc-js] [--admin-address HOST:PORT]
                   [--log-level LEVEL] [--max-message-bytes N] [--drain-delay-ms N] [--shutdown-grace-ms N]
                   [--api-key-pepper-file FILE] [--redis-url URL] [--clamd ADDRESS] [--clamd-max-bytes N]
                   [--workers N]
  portcullis check URL|PATH [-X|--request METHOD] [-H|--header 'name: value']... [-d|--data TEXT|@FILE]
                   [--principal ID] [--cert FILE] [--route NAME] [--source IP] [--server HOST:PORT]
                   [--timeout-ms N] [--json]
  portcullis policy validate FILE [--api-key-pepper-file FILE]
  portcullis policy test DIR [--catalog FILE] [--pepper-file FILE] [--json]
  portcullis policy diff OLD NEW [--tests DIR] [--audit FILE] [--pepper-file FILE] [--json]
  portcullis key create --partner ID [--id KEY_ID] [--expires ISO8601] [--pepper-file FILE]
  portcullis token mint --client-id ID [--sub USER] [--scope 'a b'] [--ttl SECONDS] [--cert FILE]
                   [--auth-time SECONDS] [--acr VALUE] [--claim NAME=VALUE]... [--issuer URL]
                   [--audience AUD] [--keys FILE] [--kid KID]
  portcullis revoke|unrevoke jti|application|api_key ID [--ttl SECONDS] [--redis-url URL]
                   [--config FILE] [--force]
  portcullis revoke list [--redis-url URL] [--config FILE] [--json]
  portcullis quota status --partner ID [--admin URL] [--json]
  portcullis help [COMMAND]

Run 'portcullis help COMMAND' (serve, check, policy, key, token, revoke, quota) for details.
Docs: docs/configuration.md, docs/errors.md, docs/envoy.md.
`;

export const SERVE_HELP = `portcullis serve: answer Envoy's Check calls for the policy catalog FILE.

Flags (environment variable in brackets, then the default):
  --config FILE             policy catalog [${SERVE_ENV.catalogFile}] (examples/catalog.yaml)
  --grpc-address HOST:PORT  Check and grpc.health.v1 [${SERVE_ENV.grpcAddress}] (${SERVE_DEFAULTS.grpcAddress})
  --transport NAME          gRPC transport: http2 (node:http2, our framing: about half grpc-js' CPU per
                            Check) or grpc-js [${SERVE_ENV.transport}] (${SERVE_DEFAULTS.transport})
  --admin-address HOST:PORT /metrics /healthz /readyz [${SERVE_ENV.adminAddress}] (${SERVE_DEFAULTS.adminAddress})
  --log-level LEVEL         fatal|error|warn|info|debug|trace|silent [${SERVE_ENV.logLevel}] (${SERVE_DEFAULTS.logLevel})
  --max-message-bytes N     largest CheckRequest accepted; keep it above Envoy's
                            with_request_body.max_request_bytes plus headers [${SERVE_ENV.maxMessageBytes}] (${SERVE_DEFAULTS.maxMessageBytes})
  --drain-delay-ms N        after SIGTERM, report NOT_SERVING this long before closing [${SERVE_ENV.drainDelayMs}] (${SERVE_DEFAULTS.drainDelayMs})
  --shutdown-grace-ms N     then let in-flight calls finish for at most this long [${SERVE_ENV.shutdownGraceMs}] (${SERVE_DEFAULTS.shutdownGraceMs})
  --api-key-pepper-file F   the secret API keys are hashed with [${SERVE_ENV.apiKeyPepperFile}], or the value
                            itself in ${PEPPER_ENV}; required when the catalog has api_keys
                            (without --config, the embedded example catalog gets the example pepper)
  --clamd ADDRESS           clamd for malware scans: host:port or /path/to/clamd.ctl [${SERVE_ENV.clamd}]
                            (none: routes that scan follow their content.scan.on_error)
  --clamd-max-bytes N       clamd's StreamMaxLength; larger content is refused as scan_too_large
                            [${SERVE_ENV.clamdMaxBytes}] (${SERVE_DEFAULTS.clamdMaxBytes})
  --workers N               processes sharing the gRPC port; the primary serves the admin endpoints;
                            more than 1 needs --redis-url (shared quotas) [${SERVE_ENV.workers}] (${SERVE_DEFAULTS.workers})
  --redis-url URL           Redis for quotas and live revocations [${SERVE_ENV.redisUrl}] (none: in-process
                            quotas, catalog revocation lists only)

Tracing (OpenTelemetry, OTLP/HTTP) is on when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: a span per Check, a child per stage, joined to Envoy's
trace through traceparent.

Exits 0 after a clean shutdown (SIGTERM or SIGINT), 1 when the catalog or a setting is invalid.
`;

export const CHECK_HELP = `portcullis check: send one Check, shaped as Envoy would, and print the decision.

  URL|PATH                  https://api.example.com/v1/orders?x=1, or /v1/orders with -H 'host: ...'
  -X, --request METHOD      HTTP method (GET, or POST when --data is given)
  -H, --header 'N: V'       request header, repeatable
  -d, --data TEXT|@FILE     request body (raw bytes of FILE with @)
  --principal ID            mTLS principal (SPIFFE id) Envoy would report
  --cert FILE               client certificate (PEM); the principal is taken from it unless given
  --route NAME              the 'route' context extension Envoy would send
  --source IP               client address (127.0.0.1)
  --server HOST:PORT        portcullis to ask (127.0.0.1:9001)
  --timeout-ms N            Check deadline, like Envoy's ext_authz timeout (1000)
  --json                    print the decoded CheckResponse as JSON

Exit codes: 0 allowed, 1 denied, 2 error (bad flags, server unreachable, timeout).
`;

export const KEY_HELP = `portcullis key create: make a new API key for a partner.

  --partner ID           the partner the key belongs to (required)
  --id KEY_ID            the key's public name (default: PARTNER-key-YYYYMMDD)
  --expires ISO8601      when it stops working, e.g. 2027-06-30T00:00:00Z
  --pepper-file FILE     the server's pepper [${SERVE_ENV.apiKeyPepperFile}]; or set ${PEPPER_ENV}

Prints the key ONCE (it is stored nowhere) and the catalog entry to add under the partner's
identities.api_keys: only its HMAC-SHA-256 under the pepper, never the key.
`;

export const TOKEN_HELP = `portcullis token mint: sign an access token, by default with the EXAMPLE issuer's keys
(examples/keys: public on purpose, for the demo and tests only).

  --client-id ID         the application (client_id claim; required)
  --sub USER             the end user (sub)
  --scope 'a b'          space-delimited scopes
  --ttl SECONDS          lifetime (600)
  --cert FILE            bind the token to this client certificate (cnf.x5t#S256, RFC 8705)
  --auth-time SECONDS    auth_time as seconds ago (step-up), e.g. 0 for "just now"
  --acr VALUE            authentication context class
  --claim NAME=VALUE     any other string claim, repeatable
  --issuer URL           iss (https://idp.example.com)
  --audience AUD         aud (partner-api)
  --keys FILE            private JWKs to sign with (examples/keys/signing-keys.json)
  --kid KID              which key (the first private key of the file)

Prints the token on stdout.
`;

export const REVOKE_HELP = `portcullis revoke KIND ID [--ttl SECONDS]: revoke a credential now, on every replica.
portcullis unrevoke KIND ID: lift it.
portcullis revoke list: what is revoked now, when it was revoked and how long it stays.

  KIND                   jti (one token), application (every token of a client id), api_key (a key id)
  --ttl SECONDS          forget the revocation after this long (e.g. the token's remaining lifetime)
  --redis-url URL        the Redis portcullis watches [${SERVE_ENV.redisUrl}]
  --config FILE          the catalog to check the id against [${SERVE_ENV.catalogFile}]: an application or
                         API key id it does not have is refused with a warning (exit 1), nothing written;
                         the partner of a known id is printed (and listed by revoke list)
  --force                revoke an id the catalog does not have (e.g. one a new catalog will add)
  --json                 revoke list: print the entries as JSON

Writes to Redis and publishes the change: every portcullis started with the same --redis-url drops
the credential within a second, and logs ("revocation applied") and counts
(portcullis_revocations_applied_total) it. Without Redis, list revocations in the catalog
(revocations:). A token id (jti) cannot be checked: tokens are not in the catalog.
Exit codes: 0 done, 1 unknown id (without --force), 2 usage error or Redis unreachable.
`;

export const QUOTA_HELP = `portcullis quota status --partner ID: a partner's limits, used and left, from a running portcullis.

  --partner ID           the partner (required)
  --admin URL            the admin server of a running portcullis (http://127.0.0.1:9090)
  --json                 print the admin endpoint's JSON as is

Reads GET /v1/partners/ID/quota on the admin server (loopback only: partners never reach it).
Nothing is charged. RESET is when the limit admits a request again while it is exhausted, else when
it is full again: the same figure as the RateLimit header's t and a 429's Retry-After (e.g. "1m 12s";
--json gives reset_seconds). Exit codes: 0 shown, 1 no such partner, 2 error.
`;

export const POLICY_TEST_HELP = `portcullis policy test DIR [--catalog FILE] [--pepper-file FILE] [--json]

Runs the policy tests in DIR (every *.yaml/*.yml below it, or one FILE) against a catalog, through
the real pipeline in process: an in-memory quota store per case, a fixed clock per file (clock:,
default ${DEFAULT_CLOCK}), no Redis, no network. Fixture format: docs/policy-testing.md.

  --catalog FILE         the catalog under test (default: DIR/../catalog.yaml)
  --pepper-file FILE     API key pepper, for fixtures with real API keys [${SERVE_ENV.apiKeyPepperFile}]
                         (or the value in PORTCULLIS_API_KEY_PEPPER), whatever the catalog; for the
                         example catalog: examples/keys/api-key-pepper.txt. Keys named by id
                         (api_key: {id: …}) need none.
  --json                 print the results as JSON

Prints PASS or FAIL per case (a failure says what was expected and what came), then
"N passed, M failed".
Exit codes: 0 every case passed, 1 some failed, 2 usage error or invalid catalog or fixtures
(each problem as FILE:LINE:COLUMN: PATH: MESSAGE).
`;

export const POLICY_DIFF_HELP = `portcullis policy diff OLD NEW [--tests DIR] [--audit FILE] [--pepper-file FILE] [--json]

What changed from catalog OLD to catalog NEW, and which decisions flip.

  --tests DIR            run the requests of these policy tests through both catalogs
  --audit FILE           replay the decisions of this audit log (JSON lines, as serve writes them)
                         through both catalogs, in order, each at its logged time
  --pepper-file FILE     API key pepper, for test fixtures with real API keys [${SERVE_ENV.apiKeyPepperFile}]
  --json                 print the report as JSON

Prints the structural changes (routes, partners, issuers, plans and limits, access lists, identity
requirements, settings: added and removed ones in full, changed ones with old → new values; the
files the catalogs name, schemas and JWKS files, as JSON diffs), then every sample request whose
decision flips (allow → deny, deny → allow, or another code), grouped by partner; a repeated
request (quotas) shows its final answer under each catalog, then its first flip. An audit
line holds no credentials nor body: what the replay assumes is printed next to each flip.
Exit codes: 0 no decision flips, 1 some decisions flip, 2 usage error, invalid catalog, fixtures or
audit file.
`;

export const POLICY_HELP = `portcullis policy validate FILE [--api-key-pepper-file FILE]: check a policy catalog.

Prints every problem as FILE:LINE:COLUMN: PATH: MESSAGE and exits 1, or prints a summary and exits 0.
Warnings (a legal catalog that is likely not meant, e.g. a catch-all route after more specific ones)
are printed as "warning: FILE:LINE:COLUMN: PATH: MESSAGE" and do not change the exit code.
Warns (on stderr, still exit 0) when the catalog has api_keys and no pepper is configured:
--api-key-pepper-file FILE, [${SERVE_ENV.apiKeyPepperFile}] or ${PEPPER_ENV}, as serve reads it.

${POLICY_TEST_HELP}
${POLICY_DIFF_HELP}`;

export function helpFor(topic: string | undefined): string {
  if (topic === 'serve') return SERVE_HELP;
  if (topic === 'check') return CHECK_HELP;
  if (topic === 'policy') return POLICY_HELP;
  if (topic === 'key') return KEY_HELP;
  if (topic === 'token') return TOKEN_HELP;
  if (topic === 'quota') return QUOTA_HELP;
  if (topic === 'revoke' || topic === 'unrevoke') return REVOKE_HELP;
  return HELP;
}

/** Every topic `portcullis help TOPIC` knows, with its text. */
export const HELP_TOPICS = [
  'serve',
  'check',
  'policy',
  'key',
  'token',
  'revoke',
  'unrevoke',
  'quota',
] as const;
