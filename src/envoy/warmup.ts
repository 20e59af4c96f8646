// Warm-up before reporting SERVING: a cold process meets its first burst with cold code (lazy
// compilation, inline caches, first-use allocations of protobufjs and the pipeline). A few
// synthetic Checks per route go through the real codec, normalize, pipeline and encoder.
//
// They must change nothing: the quota and scan stages are replaced by no-ops (no Redis charge,
// no clamd call), they carry no credentials (no JWKS fetch, no cache entry), there is no admission
// gate, and their decisions are neither logged nor counted.
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { Pipeline } from '../pipeline/check.js';
import type { Stages } from '../pipeline/types.js';
import type { Catalog } from '../policy/catalog.js';
import { pass } from '../stage.js';
import { checkCodec } from './codec.js';
import { encodeCheckResponse } from './encode-response.js';
import { normalize } from './normalize.js';

/** Routes warmed (the first ones of the catalog) and rounds per route. */
const MAX_ROUTES = 32;
const ROUNDS = 8;
/** The warm-up never delays the start by more than this. */
const BUDGET_MS = 500;

/** Runs the synthetic Checks; resolves with how many were answered. Never rejects. */
export async function warmUp(stages: Stages, catalog: Catalog, clock: Clock): Promise<number> {
  const pipeline = new Pipeline(
    { ...stages, quota: () => pass({ headers: [], note: '' }), scan: () => pass('') },
    clock,
  );
  const codec = checkCodec();
  const routes = catalog.routes.slice(0, MAX_ROUTES);
  let answered = 0;
  const until = performance.now() + BUDGET_MS;
  for (let round = 0; round < ROUNDS && performance.now() < until; round++) {
    for (const route of routes) {
      try {
        const bytes = codec.encodeRequest(syntheticRequest(route.name, round));
        const normalized = normalize(codec.decodeRequest(bytes), {
          maxHeaderValueBytes: catalog.settings.maxHeaderValueBytes,
        });
        if (!normalized.ok) continue;
        const ctx = { catalog, decisionId: randomUUID(), deadline: clock.now() + BUDGET_MS };
        const outcome = await pipeline.check(normalized.request, ctx);
        encodeCheckResponse(outcome.decision, catalog.settings.problemBaseUrl);
        answered++;
      } catch {
        // A warm-up Check that fails warms less; it never stops the start.
      }
    }
  }
  return answered;
}

function syntheticRequest(route: string, round: number): object {
  const method = round % 2 === 0 ? 'GET' : 'POST';
  const body = round % 2 === 0 ? Buffer.alloc(0) : Buffer.from('{"warm":true}');
  const headers: Record<string, string> = {
    ':authority': 'warm-up.portcullis.invalid',
    ':method': method,
    ':path': '/',
    ':scheme': 'https',
    'content-type': 'application/json',
    'content-length': String(body.length),
    'x-request-id': `warm-up-${round}`,
  };
  return {
    attributes: {
      source: {
        address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
        principal: '',
        certificate: '',
      },
      request: {
        http: {
          id: '0',
          method,
          headers,
          path: '/',
          host: 'warm-up.portcullis.invalid',
          scheme: 'https',
          raw_body: body,
        },
      },
      context_extensions: { route },
    },
  };
}
