// The policy catalog's one typed schema. Defaults live here and nowhere else.
// Every object is strict: an unknown key is an error, never silently ignored.
// Sections for identity (JWT, API keys), quotas and content slot in as new keys of `partners[]`
// and `routes[]` without reshaping what is here.
import { z } from 'zod';

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
    allow: accessList.default({ partners: [], cidrs: [] }),
    deny: accessList.default({ partners: [], cidrs: [] }),
  })
  .default({ allow: { partners: [], cidrs: [] }, deny: { partners: [], cidrs: [] } });

const partner = z.strictObject({
  id: name('partner id'),
  name: z.string().min(1),
  status: z.enum(['active', 'suspended']).default('active'),
  identities: z
    .strictObject({
      /** mTLS principals as Envoy reports them: SPIFFE id (URI SAN), DNS SAN or subject. */
      principals: z.array(z.string().min(1)).default([]),
    })
    .default({ principals: [] }),
});

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
    .default({ hosts: ['*'], path: { prefix: '/' }, methods: [] }),
  identity: z
    .strictObject({
      /** false = anonymous callers pass (the partner is still identified when credentials come). */
      required: z.boolean().default(true),
    })
    .default({ required: true }),
  access,
  /** What an internal failure or a missed deadline means on this route. */
  on_error: z.enum(['deny', 'allow']).default('deny'),
  upstream_headers: z
    .strictObject({
      set: headerSet.default({}),
      remove: z.array(headerName.transform((s) => s.toLowerCase())).default([]),
    })
    .default({ set: {}, remove: [] }),
  response_headers: z.strictObject({ set: headerSet.default({}) }).default({ set: {} }),
});

export const catalogSchema = z.strictObject({
  /** Optional human name of this version (e.g. a release tag); the content hash is always added. */
  version_name: z.string().max(128).optional(),
  settings: z
    .strictObject({
      /** Base of the RFC 9457 `type` URI: `<base>#<code>`. */
      problem_base_url: z.url().default('https://portcullis.dev/docs/errors'),
      /** Longest accepted single header value, in bytes (Envoy's own limit is 16 KiB). */
      max_header_value_bytes: z.number().int().min(256).max(65536).default(16384),
      audit: z
        .strictObject({
          /** Log request headers (redacted) in the audit line. Off by default: it costs CPU per Check. */
          headers: z.boolean().default(false),
        })
        .default({ headers: false }),
    })
    .default({
      problem_base_url: 'https://portcullis.dev/docs/errors',
      max_header_value_bytes: 16384,
      audit: { headers: false },
    }),
  access,
  partners: z.array(partner).default([]),
  routes: z.array(route).min(1, 'at least one route is required'),
  /** Route used when no route matches; without it such requests get `route_not_found`. */
  default_route: z.string().optional(),
});

export type CatalogDocument = z.output<typeof catalogSchema>;
export type RouteDocument = CatalogDocument['routes'][number];
export type PartnerDocument = CatalogDocument['partners'][number];
export type AccessDocument = CatalogDocument['access'];
export type PathMatchDocument = RouteDocument['match']['path'];
