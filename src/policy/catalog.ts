// The compiled, frozen catalog the pipeline reads. Everything the hot path needs is precomputed
// here at load time (matchers, CIDR block lists, lookup maps), so a Check never parses config.
import type { BlockList } from 'node:net';
import type { Header } from '../decision.js';

export interface AccessPolicy {
  readonly allowPartners: ReadonlySet<string>;
  readonly denyPartners: ReadonlySet<string>;
  /** null = no allow list (everyone allowed). */
  readonly allowCidrs: BlockList | null;
  readonly denyCidrs: BlockList | null;
}

export interface Partner {
  readonly id: string;
  readonly name: string;
  readonly status: 'active' | 'suspended';
}

export interface RouteMatcher {
  /** true = any host. */
  readonly anyHost: boolean;
  readonly exactHosts: ReadonlySet<string>;
  /** Suffixes of `*.example.com` wildcards, with the leading dot: `.example.com`. */
  readonly hostSuffixes: readonly string[];
  readonly path: (path: string) => boolean;
  /** Empty = every method. */
  readonly methods: ReadonlySet<string>;
}

export interface RoutePolicy {
  readonly name: string;
  readonly match: RouteMatcher;
  readonly identityRequired: boolean;
  readonly access: AccessPolicy;
  readonly onError: 'deny' | 'allow';
  readonly upstreamSet: readonly Header[];
  readonly upstreamRemove: readonly string[];
  readonly responseSet: readonly Header[];
}

export interface CatalogSettings {
  readonly problemBaseUrl: string;
  readonly maxHeaderValueBytes: number;
  readonly auditHeaders: boolean;
}

export interface Catalog {
  /** `sha256:` + the first 16 hex digits of the file's SHA-256: changes whenever a byte does. */
  readonly version: string;
  readonly versionName: string;
  readonly file: string;
  readonly settings: CatalogSettings;
  readonly access: AccessPolicy;
  readonly routes: readonly RoutePolicy[];
  readonly routesByName: ReadonlyMap<string, RoutePolicy>;
  readonly defaultRoute: RoutePolicy | undefined;
  readonly partners: ReadonlyMap<string, Partner>;
  readonly partnersByPrincipal: ReadonlyMap<string, Partner>;
}
