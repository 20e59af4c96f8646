// Stage 4, authorize: may this partner, from this address, use this route?
// Global lists first, then the route's; within each, deny lists win over allow lists.
import type { Clock } from '../clock.js';
import type { Denial } from '../decision.js';
import { challenge } from '../identity/challenge.js';
import { normalizeAddress } from '../net/cidr.js';
import type { AccessPolicy, Catalog, RoutePolicy } from '../policy/catalog.js';
import type { CompiledRule, RuleInput } from '../policy/rules.js';
import type { Request } from '../request.js';
import { pass, refuse, type StageResult } from '../stage.js';
import type { AuthorizeOutcome, Identity } from './outcomes.js';

export function createAuthorizeStage(clock: Clock) {
  return function authorize(
    request: Request,
    catalog: Catalog,
    route: RoutePolicy,
    identity: Identity,
  ): StageResult<AuthorizeOutcome> {
    const now = clock.now();
    const denial =
      checkAccess(catalog.access, 'global', request, identity) ??
      checkAccess(route.access, `route ${route.name}`, request, identity) ??
      checkScopes(catalog, route, identity) ??
      checkStepUp(catalog, route, identity, now / 1000);
    if (denial) return refuse(denial);
    return checkRules(request, route, identity, now);
  };
}

const NOTHING: AuthorizeOutcome = Object.freeze({ dryRun: null });

/**
 * The route's rules, then the partner's: the first that applies decides. A deny rule in dry-run
 * is remembered (the first one) and evaluation goes on as if it had not applied. A rule whose
 * evaluation fails (it indexes a header or claim the request lacks: input the caller chooses) fails
 * safe, never into on_error: a deny rule counts as applying, an allow rule as not applying.
 */
function checkRules(
  request: Request,
  route: RoutePolicy,
  identity: Identity,
  now: number,
): StageResult<AuthorizeOutcome> {
  const partnerRules = identity.partner?.rules ?? [];
  if (route.rules.length === 0 && partnerRules.length === 0) return pass(NOTHING);
  const input = ruleInput(request, route, identity, now);
  let dryRun: Denial | null = null;
  for (const rule of [...route.rules, ...partnerRules]) {
    const verdict = judge(rule, input);
    if (verdict === false) continue;
    if (rule.action === 'allow') break;
    const reason =
      verdict === true
        ? `rule ${rule.name}`
        : `rule ${rule.name}: evaluation failed, counted as applying (${verdict})`;
    const denial: Denial = { code: 'rule_denied', detail: rule.message, reason };
    if (!rule.dryRun) return refuse(denial);
    dryRun ??= denial;
  }
  return pass(dryRun ? { dryRun } : NOTHING);
}

/** true/false: the rule applies or not; a string: its evaluation failed, and why. */
function judge(rule: CompiledRule, input: RuleInput): boolean | string {
  try {
    return rule.evaluate(input);
  } catch (error: unknown) {
    // A deny rule counts as applying, an allow rule as not applying: see checkRules.
    const message = error instanceof Error ? error.message : String(error);
    return rule.action === 'allow' ? false : message;
  }
}

function ruleInput(request: Request, route: RoutePolicy, identity: Identity, now: number): RuleInput {
  const date = new Date(now);
  return {
    method: request.method,
    path: request.path,
    host: request.host,
    route: route.name,
    source_ip: request.source.address,
    content_type: request.headers.get('content-type') ?? '',
    // The rule language reads maps as Map: a HeaderList (src/header-list.ts) is copied into one,
    // only on the routes that have rules.
    headers: request.headers instanceof Map ? request.headers : new Map(request.headers),
    query: request.query,
    body_bytes: BigInt(request.body.length),
    partner: identity.partner?.id ?? '',
    partner_name: identity.partner?.name ?? '',
    application: identity.application,
    user: identity.user,
    principal: identity.principal,
    scopes: [...identity.scopes],
    claims: new Map(Object.entries(identity.claims)),
    credentials: identity.credentials,
    now: BigInt(Math.floor(now / 1000)),
    hour: BigInt(date.getUTCHours()),
    weekday: BigInt(date.getUTCDay()),
  };
}

/** Every scope the route lists must be in the token (RFC 6750 insufficient_scope). */
function checkScopes(catalog: Catalog, route: RoutePolicy, identity: Identity): Denial | null {
  const required = route.identity.scopes;
  if (required.length === 0) return null;
  // Scopes live in tokens: a caller identified otherwise (certificate, API key) has none.
  const hasToken = identity.credentials.includes('jwt');
  const missing = hasToken ? required.filter((s) => !identity.scopes.has(s)) : required;
  if (missing.length === 0) return null;
  return {
    code: 'insufficient_scope',
    detail: hasToken
      ? `The access token lacks the scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')}.`
      : `This route requires a bearer token with the scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')}.`,
    reason: hasToken
      ? `missing scopes: ${missing.join(' ')}`
      : `no token; route requires scopes ${missing.join(' ')}`,
    headers: [
      {
        name: 'www-authenticate',
        value: challenge('Bearer', {
          realm: catalog.settings.realm,
          error: 'insufficient_scope',
          scope: required.join(' '),
        }),
      },
    ],
  };
}

/** RFC 9470 step-up: a recent enough `auth_time` and an accepted `acr`. */
function checkStepUp(
  catalog: Catalog,
  route: RoutePolicy,
  identity: Identity,
  nowSeconds: number,
): Denial | null {
  const { maxAuthAgeSeconds, acrValues } = route.identity;
  if (maxAuthAgeSeconds === undefined && acrValues.length === 0) return null;
  // Step-up is about a user's authentication, which only a token states.
  let reason = identity.credentials.includes('jwt') ? '' : 'no token: step-up needs auth_time/acr';
  if (!reason && maxAuthAgeSeconds !== undefined) {
    if (identity.authTime === undefined) reason = 'token has no auth_time';
    else if (nowSeconds - identity.authTime > maxAuthAgeSeconds) {
      reason = `authenticated ${Math.round(nowSeconds - identity.authTime)} s ago, max ${maxAuthAgeSeconds} s`;
    }
  }
  if (!reason && acrValues.length > 0 && !acrValues.includes(identity.acr ?? '')) {
    reason = `acr ${JSON.stringify(identity.acr ?? '')} not in [${acrValues.join(', ')}]`;
  }
  if (!reason) return null;
  return {
    code: 'step_up_required',
    reason,
    headers: [
      {
        name: 'www-authenticate',
        value: challenge('Bearer', {
          realm: catalog.settings.realm,
          error: 'insufficient_user_authentication',
          error_description: 'A more recent or stronger authentication is required',
          max_age: maxAuthAgeSeconds === undefined ? undefined : String(maxAuthAgeSeconds),
          acr_values: acrValues.length > 0 ? acrValues.join(' ') : undefined,
        }),
      },
    ],
  };
}

function checkAccess(
  access: AccessPolicy,
  scope: string,
  request: Request,
  identity: Identity,
): Denial | null {
  if (access.denyCidrs || access.allowCidrs) {
    const source = normalizeAddress(request.source.address);
    if (!source) {
      return {
        code: 'source_ip_denied',
        reason: `${scope}: source address "${request.source.address}" unknown`,
      };
    }
    if (access.denyCidrs?.check(source.address, source.family)) {
      return { code: 'source_ip_denied', reason: `${scope}: ${source.address} is on the deny list` };
    }
    if (access.allowCidrs && !access.allowCidrs.check(source.address, source.family)) {
      return { code: 'source_ip_denied', reason: `${scope}: ${source.address} is not on the allow list` };
    }
  }
  const partner = identity.partner?.id;
  if (partner !== undefined && access.denyPartners.has(partner)) {
    return { code: 'partner_denied', reason: `${scope}: partner ${partner} is on the deny list` };
  }
  if (access.allowPartners.size > 0 && (partner === undefined || !access.allowPartners.has(partner))) {
    return {
      code: 'partner_not_allowed',
      reason: `${scope}: partner ${partner ?? '(anonymous)'} is not on the allow list`,
    };
  }
  return null;
}
