// The stages in pipeline order, as the orchestrator (check.ts) calls them. What they share with
// the layers below is in ../stage.ts and ../clock.ts; what they hand on is in outcomes.ts.
import type { Catalog, RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import type { MaybePromise, StageResult } from '../stage.js';
import type { AuthorizeOutcome, ContentFindings, Identity, QuotaOutcome } from './outcomes.js';

/** The stages in pipeline order. Injected so tests (and later capabilities) can supply their own. */
export interface Stages {
  route(request: Request, catalog: Catalog): MaybePromise<StageResult<RoutePolicy>>;
  identify(request: Request, catalog: Catalog, route: RoutePolicy): MaybePromise<StageResult<Identity>>;
  authorize(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<AuthorizeOutcome>>;
  inspect(
    request: Request,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<ContentFindings | null>>;
  quota(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): MaybePromise<StageResult<QuotaOutcome>>;
  /** `deadlineMs`: epoch ms by which the scan must be done (inside Envoy's deadline). */
  scan(findings: ContentFindings | null, deadlineMs: number): MaybePromise<StageResult<string>>;
}
