// The policy catalog's one typed schema. Defaults live here and nowhere else.
// Every object is strict: an unknown key is an error, never silently ignored.
// Sections for identity (JWT, API keys), quotas and content slot in as new keys of `partners[]`
// and `routes[]` without reshaping what is here.
import { z } from 'zod';
import { SUPPORTED_ALGORITHMS } from '../identity/jwt.js';

/** RFC 7230 token: what an HTTP header name may be. */
export const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header values must not carry CR, LF or NUL (header injection), nor other C0 controls but TAB. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
export const HEADER_VALUE = /^[^\u0000-\u0008\u000a-\u001f\u007f]*$/;
/** Names used in metrics labels, headers and paths: keep them boring. */
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const name = (what: string) =>
  z.string().regex(NAME, `${what} must be 1-63 characters of a-z, 0-9, '.', '_' or '-'`);

const headerName = z.string().regex(HEADER_NAME, 'not a valid HTTP header name (RFC 7230 token)');
const headerNameLower = headerName.transform((s) => s.toLowerCase());
const headerValue = z.string().regex(HEADER_VALUE, 'header value must not contain control characters');

/** Headers to set, by name. Names are case-insensitive: two spellings of one name are an error. */
const headerSet = z
  .record(headerName, headerValue)
  .superRefine((set, ctx) => {
    const seen = new Set<string>();
    for (const key of Object.keys(set)) {
      const lower = key.toLowerCase();
      if (seen.has(lower)) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `duplicate header name "${lower}" (names are case-insensitive)`,
        });
      }
      seen.add(lower);
    }
  })
  .transform((set) => Object.fromEntries(Object.entries(set).map(([k, v]) => [k.toLowerCase(), v])));

const accessList = z.strictObject({
  partners: z.array(z.string()).default([]),
  cidrs: z.array(z.string()).default([]),
});

/** Global or per-route lists. Deny wins over allow; an empty allow list allows everyone. */
const access = z
  .strictObject({
    allow: accessList.prefault({}),
    deny: accessList.prefault({}),
  })
  .prefault({});

/** When a key stops working; ISO 8601 with a time zone. */
const instant = z.iso.datetime({ offset: true });

const apiKey = z.strictObject({
  /** Public name of the key: in logs, metrics, revocations. Never the key itself. */
  id: name('API key id'),
  /** `hmac-sha256:<base64url>` from `portcullis key create`: HMAC-SHA-256 of the key under the pepper. */
  hash: z
    .string()
    .regex(/^hmac-sha256:[A-Za-z0-9_-]{43}$/, 'must be "hmac-sha256:" and 43 base64url characters'),
  status: z.enum(['active', 'revoked']).default('active'),
  expires_at: instant.optional(),
});

/** `500ms`, `10s`, `1m`, `1h`, `1d`: a period for gcra and sliding_window limits. */
const duration = z
  .string()
  .regex(/^[1-9][0-9]{0,8}(ms|s|m|h|d)$/, 'must be a duration such as 1s, 30s, 1m, 1h or 1d');

const STORE_ERROR = ['fail_closed', 'fail_open'] as const;

/** The fields of a limit, wherever it is declared (plans, partners, routes). */
const limitFields = {
  /** Unique per partner (plan limits and the partner's own): in headers, metrics and keys. */
  name: name('limit name'),
  algorithm: z.enum(['gcra', 'sliding_window', 'fixed_window']),
  /** Units per period (gcra, sliding_window) or per calendar window (fixed_window). */
  limit: z.number().int().min(1).max(1_000_000_000),
  period: duration.optional(),
  /** fixed_window: the calendar window, aligned in the partner's time zone. */
  window: z.enum(['minute', 'hour', 'day', 'week', 'month']).optional(),
  /** gcra: the most units admitted at once (default: limit). */
  burst: z.number().int().min(1).optional(),
  /** Units a request costs: a constant, or one unit per started N bytes of body. */
  cost: z
    .union([
      z.number().int().min(1).max(1_000_000),
      z.strictObject({ per_body_bytes: z.number().int().min(1) }),
    ])
    .default(1),
  /** Report would-refuse decisions (logs, metrics) but never refuse. */
  shadow: z.boolean().default(false),
  /** Apply only on these methods (empty = all). */
  methods: z.array(z.string().regex(/^[A-Z]+$/, 'an upper-case HTTP method')).default([]),
  /** When the quota store (Redis) fails: overrides the route's quota.on_store_error. */
  on_store_error: z.enum(STORE_ERROR).optional(),
};

type LimitFieldsDocument = z.output<z.ZodObject<typeof limitFields>>;

function checkLimitFields(l: LimitFieldsDocument, ctx: z.core.$RefinementCtx): void {
  if (l.algorithm === 'fixed_window' && (l.window === undefined || l.period !== undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: ['window'],
      message: 'fixed_window needs "window" (and no "period")',
    });
  }
  if (l.algorithm !== 'fixed_window' && (l.period === undefined || l.window !== undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: ['period'],
      message: `${l.algorithm} needs "period" (and no "window")`,
    });
  }
  if (l.burst !== undefined && l.algorithm !== 'gcra') {
    ctx.addIssue({ code: 'custom', path: ['burst'], message: 'only gcra limits have a burst' });
  }
}

const quotaLimit = z
  .strictObject({
    ...limitFields,
    /** Apply only on these routes (empty = all). */
    routes: z.array(z.string()).default([]),
  })
  .superRefine(checkLimitFields);

/**
 * A limit of a route (`routes[].quota.limits`), counted per `per`:
 * - partner: each identified partner has its own counter on this route (every partner inherits it);
 * - route: one counter shared by every caller of the route (protects the upstream);
 * - source: one counter per client address block, for anonymous callers (identified ones are
 *   counted per partner): an IPv4 /`source_prefix.ipv4` (default /32), an IPv6 /`source_prefix.ipv6`
 *   (default /64).
 */
const routeLimit = z
  .strictObject({
    ...limitFields,
    per: z.enum(['partner', 'route', 'source']).default('partner'),
    source_prefix: z
      .strictObject({
        ipv4: z.number().int().min(1).max(32).default(32),
        ipv6: z.number().int().min(1).max(128).default(64),
      })
      .optional(),
  })
  .superRefine((l, ctx) => {
    checkLimitFields(l, ctx);
    if (l.source_prefix !== undefined && l.per !== 'source') {
      ctx.addIssue({
        code: 'custom',
        path: ['source_prefix'],
        message: 'only limits with per: source have a source_prefix',
      });
    }
  });

/** A CEL rule: `when` true → `action`. See docs/configuration.md#rules for the input. */
const rule = z.strictObject({
  name: name('rule name'),
  when: z.string().min(1),
  action: z.enum(['deny', 'allow']).default('deny'),
  /** Partner-facing reason of a denial (the problem's `detail`). */
  message: z.string().max(500).default('A policy rule refused this request.'),
  /** Log and count a would-deny, but let the request through (marked upstream). */
  dry_run: z.boolean().default(false),
});

const plan = z.strictObject({
  name: name('plan name'),
  description: z.string().optional(),
  limits: z.array(quotaLimit).min(1, 'a plan needs at least one limit'),
});

const partner = z.strictObject({
  id: name('partner id'),
  name: z.string().min(1),
  status: z.enum(['active', 'suspended']).default('active'),
  /** The plan whose limits apply to this partner. */
  plan: z.string().optional(),
  /** IANA zone calendar windows (day, week, month) are aligned in. */
  time_zone: z.string().default('UTC'),
  /** Limits of this partner's own, on top of its plan's. */
  limits: z.array(quotaLimit).default([]),
  /** Rules for this partner on every route, evaluated after the route's own. */
  rules: z.array(rule).default([]),
  identities: z
    .strictObject({
      /** mTLS principals as Envoy reports them: SPIFFE id (URI SAN), DNS SAN or subject. */
      principals: z.array(z.string().min(1)).default([]),
      /** OAuth client ids (the token's application claim) that belong to this partner. */
      /**
       * A client id from any issuer, or `{client_id, issuer}` from that issuer only. With several
       * issuers the second form is required: otherwise one issuer could mint another's client ids.
       */
      applications: z
        .array(
          z.union([z.string().min(1), z.strictObject({ client_id: z.string().min(1), issuer: z.string() })]),
        )
        .default([]),
      api_keys: z.array(apiKey).default([]),
    })
    .prefault({}),
});

/** The verifier's list (never `none`, never HMAC): one list for the schema and the verifier. */
const JWT_ALGORITHMS = SUPPORTED_ALGORITHMS;

const issuer = z.strictObject({
  /** Catalog name, referenced by routes. */
  name: name('issuer name'),
  /** Exact `iss` claim value. */
  issuer: z.string().min(1),
  jwks: z.union([
    z
      .strictObject({
        url: z.url({ protocol: /^https?$/ }),
        /** Plain http lets anyone on the path inject keys: only for loopback tests and labs. */
        allow_http: z.boolean().default(false),
        timeout_ms: z.number().int().min(100).max(30_000).default(2000),
        ttl_seconds: z.number().int().min(10).max(86_400).default(300),
        /** Shortest interval between two refetches triggered by unknown kids. */
        cooldown_seconds: z.number().int().min(1).max(3600).default(30),
        /** How long cached keys keep verifying while the endpoint fails (at least ttl_seconds). */
        max_stale_seconds: z.number().int().min(10).max(604_800).default(86_400),
      })
      .superRefine((j, ctx) => {
        if (j.max_stale_seconds < j.ttl_seconds) {
          ctx.addIssue({
            code: 'custom',
            path: ['max_stale_seconds'],
            message: `must be at least ttl_seconds (${j.ttl_seconds})`,
          });
        }
        if (j.url.startsWith('http:') && !j.allow_http) {
          ctx.addIssue({
            code: 'custom',
            path: ['url'],
            message: 'must be https (or set allow_http: true, for tests only)',
          });
        }
      }),
    /** A JWKS file, relative to the catalog; re-read after ttl_seconds. */
    z.strictObject({ file: z.string().min(1), ttl_seconds: z.number().int().min(1).max(86_400).default(60) }),
  ]),
  audiences: z.array(z.string().min(1)).min(1, 'list at least one audience'),
  /** Required: which signature algorithms this issuer uses. HMAC and "none" are never accepted. */
  algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1, 'list at least one algorithm'),
  clock_skew_seconds: z.number().int().min(0).max(300).default(30),
  max_lifetime_seconds: z.number().int().min(1).optional(),
  required_claims: z.array(z.string().min(1)).default([]),
  /** Claims naming the application (OAuth client), first present wins. */
  application_claims: z.array(z.string().min(1)).min(1).default(['client_id', 'azp']),
  user_claim: z.string().min(1).default('sub'),
});

const CREDENTIALS = ['mtls', 'jwt', 'api_key'] as const;

const routeIdentity = z
  .strictObject({
    /** false = anonymous callers pass (presented credentials are still verified). */
    required: z.boolean().default(true),
    /**
     * Credentials this route accepts; any one of them identifies the caller. Default: those of
     * all_of when it is set, else every kind.
     */
    any_of: z.array(z.enum(CREDENTIALS)).min(1).optional(),
    /** Credentials that must all be presented and valid, and name the same partner. */
    all_of: z.array(z.enum(CREDENTIALS)).default([]),
    jwt: z
      .strictObject({
        /** Issuer names; empty = every issuer of the catalog. */
        issuers: z.array(z.string()).default([]),
        /** Scopes the token must all carry (`scope` string or `scp` list). */
        scopes: z.array(z.string().min(1)).default([]),
        /** RFC 8705: the token must carry cnf.x5t#S256 matching the client certificate. */
        bind_certificate: z.boolean().default(false),
        /** Accept the token from this query parameter (discouraged: URLs end up in logs). */
        query_param: z.string().min(1).optional(),
        /** Step-up (RFC 9470): maximum age of the user's authentication (`auth_time`). */
        max_auth_age_seconds: z.number().int().min(0).optional(),
        /** Step-up: the token's `acr` must be one of these. */
        acr_values: z.array(z.string().min(1)).default([]),
      })
      .prefault({}),
    api_key: z.strictObject({ header: headerNameLower.default('x-api-key') }).prefault({}),
    /** Forward the Authorization / API key header upstream (removed by default). */
    keep_credentials: z.boolean().default(false),
  })
  .prefault({});

/** Every key optional: a route's content policy, or a partner's override of it (merged key by key). */
const contentFields = {
  /** Largest body, in bytes (also checked against Content-Length). */
  max_body_bytes: z
    .number()
    .int()
    .min(0)
    .max(1024 * 1024 * 1024)
    .optional(),
  /** Accepted media types (`application/json`, `image/*`, `text/plain; charset=utf-8`); empty = any. */
  types: z.array(z.string().min(1)).optional(),
  body: z
    .strictObject({
      required_for: z.array(z.string().regex(/^[A-Z]+$/)).optional(),
      forbidden_for: z.array(z.string().regex(/^[A-Z]+$/)).optional(),
    })
    .optional(),
  /** Envoy forwarded only part of the body: refuse (413), or skip the checks that need all of it. */
  on_truncated: z.enum(['deny', 'skip']).optional(),
  /** Compare the declared type with the content's magic bytes. */
  magic: z.boolean().optional(),
  /** Content-Encodings accepted besides identity (the body is then not parsed). */
  encodings: z.array(z.string().min(1)).optional(),
  json: z
    .strictObject({
      max_depth: z.number().int().min(1).max(10_000).optional(),
      max_keys: z.number().int().min(0).max(10_000_000).optional(),
      max_string_length: z.number().int().min(1).optional(),
      max_bytes: z.number().int().min(1).optional(),
      duplicate_keys: z.enum(['deny', 'allow']).optional(),
      /** A JSON Schema file, relative to the catalog, compiled when the catalog loads. */
      schema: z.string().min(1).optional(),
    })
    .optional(),
  digest: z
    .strictObject({
      require: z.boolean().optional(),
      legacy: z.array(z.enum(['content-md5', 'x-checksum-sha256'])).optional(),
    })
    .optional(),
  multipart: z
    .strictObject({
      max_parts: z.number().int().min(1).max(100_000).optional(),
      max_part_bytes: z.number().int().min(1).optional(),
      types: z.array(z.string().min(1)).optional(),
      /** A regular expression file names must also match. */
      filename_pattern: z.string().optional(),
    })
    .optional(),
  scan: z
    .strictObject({
      /** Media types scanned (declared or detected); empty = everything. */
      types: z.array(z.string().min(1)).optional(),
      /** clamd unreachable or slow: refuse (503 scan_unavailable) or let through. */
      on_error: z.enum(['deny', 'allow']).optional(),
      timeout_ms: z.number().int().min(10).max(60_000).optional(),
      /** clamd's StreamMaxLength: larger content is refused as scan_too_large. */
      max_bytes: z.number().int().min(1).optional(),
    })
    .optional(),
};

const routeContent = z.strictObject({
  ...contentFields,
  /** Per-partner overrides, merged over the route's (e.g. one partner may upload 20 MB PDFs). */
  partners: z.record(z.string(), z.strictObject(contentFields)).default({}),
});

const routeQuota = z
  .strictObject({
    /** Rate limit headers for the partner: IETF draft (RateLimit, RateLimit-Policy), legacy X-RateLimit-*, both or none. */
    headers: z.enum(['draft', 'legacy', 'both', 'none']).default('draft'),
    /** When the quota store (Redis) fails: 503 quota_unavailable, or a per-replica in-memory limiter. */
    on_store_error: z.enum(STORE_ERROR).default('fail_closed'),
    /** Limits of this route, charged with the partner's own in one atomic step: see routeLimit. */
    limits: z.array(routeLimit).default([]),
  })
  .prefault({});

const pathMatch = z.union([
  z.strictObject({ prefix: z.string().startsWith('/') }),
  z.strictObject({ exact: z.string().startsWith('/') }),
  /** `/v1/orders/{id}`: `{name}` matches one non-empty segment, a trailing `/**` any rest. */
  z.strictObject({ pattern: z.string().startsWith('/') }),
]);

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'] as const;

const route = z.strictObject({
  name: name('route name'),
  description: z.string().optional(),
  match: z
    .strictObject({
      /**
       * Exact host names, `*.example.com` wildcards, or `*`; compared without port, case-insensitively.
       * Empty = never matched by host and path: only by name (context extension) or as default_route.
       */
      hosts: z.array(z.string().min(1)).default(['*']),
      path: pathMatch.default({ prefix: '/' }),
      /** Empty = every method. */
      methods: z.array(z.enum(METHODS)).default([]),
    })
    .prefault({}),
  identity: routeIdentity,
  /** Body inspection; absent = the body is not inspected. */
  content: routeContent.optional(),
  quota: routeQuota,
  access,
  /** CEL rules, in order; the first that applies decides. */
  rules: z.array(rule).default([]),
  /** Every denial on this route is logged and counted, and the request let through (marked upstream). */
  dry_run: z.boolean().default(false),
  /** What an internal failure, a missed deadline or an unavailable dependency means on this route. */
  on_error: z.enum(['deny', 'allow']).default('deny'),
  /**
   * What a Check shed by admission control (this process is overloaded) gets on this route:
   * `deny` (503 `overloaded`, Retry-After) or `allow` (let through unchecked, marked upstream),
   * for routes that must never block.
   */
  on_overload: z.enum(['deny', 'allow']).default('deny'),
  upstream_headers: z
    .strictObject({
      set: headerSet.default({}),
      remove: z.array(headerNameLower).default([]),
    })
    .prefault({}),
  response_headers: z.strictObject({ set: headerSet.default({}) }).prefault({}),
});

export const catalogSchema = z.strictObject({
  /** Optional human name of this version (e.g. a release tag); the content hash is always added. */
  version_name: z.string().max(128).optional(),
  settings: z
    .strictObject({
      /** Base of the RFC 9457 `type` URI: `<base>#<code>`. */
      problem_base_url: z.url().default('https://portcullis.dev/docs/partner-errors'),
      /** Longest accepted single header value, in bytes (Envoy's own limit is 16 KiB). */
      max_header_value_bytes: z.number().int().min(256).max(65536).default(16384),
      /** `realm` of WWW-Authenticate challenges. */
      realm: z
        .string()
        .regex(/^[\x20-\x7e]*$/, 'printable ASCII only')
        .default('partner-api'),
      /**
       * Read the client certificate from x-forwarded-client-cert when Envoy sends no peer data.
       * Only true when Envoy is configured with forward_client_cert_details: SANITIZE_SET.
       */
      trust_xfcc: z.boolean().default(false),
      /** Names of the identity headers sent upstream on allow. */
      identity_headers: z
        .strictObject({
          partner: headerNameLower.default('x-portcullis-partner'),
          application: headerNameLower.default('x-portcullis-application'),
          subject: headerNameLower.default('x-portcullis-subject'),
          scopes: headerNameLower.default('x-portcullis-scopes'),
        })
        .prefault({}),
      audit: z
        .strictObject({
          /** Log request headers (redacted) in the audit line. Off by default: it costs CPU per Check. */
          headers: z.boolean().default(false),
        })
        .prefault({}),
      quotas: z
        .strictObject({
          /** Replicas sharing the quotas: fail_open divides every limit by it (each replica counts alone). */
          replicas: z.number().int().min(1).max(10_000).default(1),
          /** How long a charged request id is remembered (Envoy retries are charged once). */
          idempotency_seconds: z.number().int().min(1).max(86_400).default(600),
        })
        .prefault({}),
      /** Admission control: Checks working at once in one process (docs/configuration.md#admission). */
      admission: z
        .strictObject({
          /** The floor of the adaptive concurrency limit. */
          min_limit: z.number().int().min(1).max(100_000).default(16),
          /** Its ceiling. min_limit = max_limit gives a fixed limit. */
          max_limit: z.number().int().min(1).max(100_000).default(1024),
          /** Where the limit starts. */
          initial_limit: z.number().int().min(1).max(100_000).default(64),
          /** Checks that may wait for a slot; 0 = shed at once over the limit. */
          max_queue: z.number().int().min(0).max(100_000).default(2048),
          /** Longest wait for a Check without a deadline (grpc-timeout); with one, the deadline decides. */
          max_queue_wait_ms: z.number().int().min(0).max(60_000).default(1000),
          /** Latency may grow to this multiple of the no-load baseline before the limit shrinks. */
          latency_tolerance: z.number().min(1).max(100).default(2),
          /** Event-loop delay (p99 over the last half second) above which the process counts as late. */
          event_loop_delay_ms: z.number().int().min(1).max(60_000).default(100),
        })
        .prefault({})
        .refine((a) => a.min_limit <= a.max_limit, {
          message: 'min_limit must not be above max_limit',
          path: ['min_limit'],
        }),
    })
    .prefault({}),
  plans: z.array(plan).default([]),
  access,
  issuers: z.array(issuer).default([]),
  partners: z.array(partner).default([]),
  /** Static revocations, for deployments without Redis (with Redis, `portcullis revoke` is live). */
  revocations: z
    .strictObject({
      jti: z.array(z.string().min(1)).default([]),
      applications: z.array(z.string().min(1)).default([]),
      api_keys: z.array(z.string().min(1)).default([]),
    })
    .prefault({}),
  routes: z.array(route).min(1, 'at least one route is required'),
  /** Route used when no route matches; without it such requests get `route_not_found`. */
  default_route: z.string().optional(),
});

export type CatalogDocument = z.output<typeof catalogSchema>;
export type RouteDocument = CatalogDocument['routes'][number];
export type PartnerDocument = CatalogDocument['partners'][number];
export type AccessDocument = CatalogDocument['access'];
export type PathMatchDocument = RouteDocument['match']['path'];
export type IssuerDocument = CatalogDocument['issuers'][number];
export type Credential = (typeof CREDENTIALS)[number];
export type QuotaLimitDocument = z.output<typeof quotaLimit>;
export type RouteLimitDocument = z.output<typeof routeLimit>;
export type RuleDocument = z.output<typeof rule>;
export type ContentDocument = z.output<typeof routeContent>;
