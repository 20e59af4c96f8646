// Stages 5 and 7, content: the cheap checks (size, type, magic bytes, JSON limits and schema,
// digests, forms) before quotas — a malformed request burns no quota — and the malware scan after
// them — a partner over its limit cannot make us scan.
import { type ContentResult, inspectCheap, inspectScan } from '../content/inspect.js';
import type { MalwareScanner } from '../content/scanner.js';
import type { ContentFailure, ContentPolicy } from '../content/types.js';
import type { Denial } from '../decision.js';
import type { RoutePolicy } from '../policy/catalog.js';
import type { Request } from '../request.js';
import { type MaybePromise, pass, refuse, type StageResult } from '../stage.js';
import type { ContentFindings, Identity } from './outcomes.js';

/** When no clamd is configured: every scan fails, and the route's scan.on_error decides. */
export const NO_SCANNER: MalwareScanner = {
  scan: async () => ({ verdict: 'error', reason: 'no clamd configured (serve --clamd)' }),
};

export function contentPolicyFor(route: RoutePolicy, identity: Identity): ContentPolicy | null {
  if (!route.content) return null;
  const partner = identity.partner?.id;
  return (partner && route.content.byPartner.get(partner)) || route.content.policy;
}

// A route without content checks answers synchronously: no promise, no microtask.
const NOT_INSPECTED: StageResult<ContentFindings | null> = Object.freeze(pass(null));
const NOT_SCANNED: StageResult<string> = Object.freeze(pass(''));

export function inspectStage(
  request: Request,
  route: RoutePolicy,
  identity: Identity,
): MaybePromise<StageResult<ContentFindings | null>> {
  const policy = contentPolicyFor(route, identity);
  return policy ? inspect(request, policy) : NOT_INSPECTED;
}

/** In this turn when inspectCheap answers in it (a JSON or text body), else when it does. */
function inspect(request: Request, policy: ContentPolicy): MaybePromise<StageResult<ContentFindings>> {
  const result = inspectCheap(request, policy);
  return result instanceof Promise ? result.then((r) => findings(r, policy)) : findings(result, policy);
}

function findings(result: ContentResult, policy: ContentPolicy): StageResult<ContentFindings> {
  return result.ok ? pass({ policy, inspected: result.value }) : refuse(denialOf(result.failure));
}

export function createScanStage(scanner: MalwareScanner) {
  return function scan(
    findings: ContentFindings | null,
    deadlineMs: number,
  ): MaybePromise<StageResult<string>> {
    return findings?.policy.scan ? scanFindings(findings, deadlineMs) : NOT_SCANNED;
  };

  async function scanFindings(findings: ContentFindings, deadlineMs: number): Promise<StageResult<string>> {
    const result = await inspectScan(findings.inspected, findings.policy, scanner, deadlineMs);
    const verdict = result.ok ? result.value : result.report;
    const note = `scan ${verdict.verdict}${verdict.note ? ` (${verdict.note})` : ''}`;
    if (!result.ok)
      return refuse({ ...denialOf(result.failure), reason: `${result.failure.reason}; ${note}` });
    return pass(note);
  }
}

function denialOf(failure: ContentFailure): Denial {
  return {
    code: failure.code,
    detail: failure.detail,
    reason: failure.reason,
    ...(failure.headers ? { headers: failure.headers } : {}),
    ...(failure.code === 'schema_violation'
      ? { problem: { errors: failure.errors, total_errors: failure.totalErrors } }
      : {}),
  };
}
