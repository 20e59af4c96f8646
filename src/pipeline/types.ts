// Shared shapes of the pipeline stages. A stage is a function of the request, the catalog and
// what earlier stages found; it returns data (a value or a Denial) and does its I/O only through
// the interfaces it is given.
import type { Denial } from '../decision.js';
import type { Catalog, Partner, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';

export type StageResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly denial: Denial };

export const pass = <T>(value: T): StageResult<T> => ({ ok: true, value });
export const refuse = (denial: Denial): StageResult<never> => ({ ok: false, denial });

/** Who is calling. `partner` is null for an anonymous caller on a route that allows it. */
export interface Identity {
  readonly partner: Partner | null;
  /** How the partner was recognised, for the audit log. */
  readonly method: 'mtls' | 'none';
  readonly subject: string;
}

export type MaybePromise<T> = T | Promise<T>;

/** The stages in pipeline order. Injected so tests (and later capabilities) can supply their own. */
export interface Stages {
  route(request: Request, catalog: Catalog): MaybePromise<StageResult<RoutePolicy>>;
  identify(request: Request, catalog: Catalog, route: RoutePolicy): MaybePromise<StageResult<Identity>>;
  authorize(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<null>>;
}

/** Time, injected so decisions stay pure and tests can fix it. Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };
