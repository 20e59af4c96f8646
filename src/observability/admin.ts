// The admin HTTP server (loopback by default, never the partner side): /metrics, /healthz (process
// up), /readyz (serving), /v1/partners/{id}/quota (a partner's usage).
import { createServer, type Server, type ServerResponse } from 'node:http';
import { plainStoreError } from '../plain-errors.js';
import type { QuotaStatus } from '../quota/status.js';
import type { DependencyReport } from './dependencies.js';
import type { Metrics } from './metrics.js';

/**
 * An operator on the pod: 127.0.0.1 or ::1 exactly (kubectl port-forward and exec connect there).
 * Not the rest of 127.0.0.0/8: a service mesh sidecar (Istio) relays every inbound mesh connection
 * from 127.0.0.6, and such a caller is anyone in the mesh.
 */
function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}

export interface AdminState {
  /** Ready = a catalog is loaded and we are not draining. */
  ready(): boolean;
  policy(): {
    version: string;
    name: string;
    last_reload?: { result: string; at: string; reason?: string; recovered?: boolean };
  };
  /** null = no such partner. */
  quotaStatus(partnerId: string): Promise<QuotaStatus | null>;
  /** The quota store, clamd and JWKS in plain words (the `dependencies` of /readyz). */
  dependencies?(): Promise<DependencyReport>;
}

const QUOTA_PATH = /^\/v1\/partners\/([a-z0-9][a-z0-9._-]{0,62})\/quota$/;

/** Where /metrics comes from: this process's registry, or (with --workers) every worker's. */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

export function registrySource(metrics: Metrics): MetricsSource {
  return { text: () => metrics.registry.metrics(), contentType: metrics.registry.contentType };
}

export function createAdminServer(metrics: MetricsSource, state: AdminState): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/healthz':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n');
        return;
      case '/readyz': {
        const ready = state.ready();
        const body = { status: ready ? 'ready' : 'not ready', policy: state.policy() };
        const send = (extra: object) =>
          res
            .writeHead(ready ? 200 : 503, { 'content-type': 'application/json' })
            .end(`${JSON.stringify({ ...body, ...extra })}\n`);
        if (!state.dependencies) {
          send({});
          return;
        }
        // Dependencies are detail, not readiness: their trouble is answered per route (on_error).
        state.dependencies().then(
          (dependencies) => send({ dependencies }),
          () => send({}),
        );
        return;
      }
      case '/metrics':
        metrics.text().then(
          (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
        return;
      default: {
        const partner = QUOTA_PATH.exec(path ?? '')?.[1];
        // Partner usage is for operators on the pod (kubectl port-forward, portcullis quota status),
        // even when the admin port listens on the pod IP for probes and Prometheus.
        if (partner && !isLoopback(req.socket.remoteAddress)) {
          json(res, 403, {
            status: 'forbidden',
            detail: 'partner quota status is served to loopback callers only',
          });
          return;
        }
        if (partner) {
          state.quotaStatus(partner).then(
            (status) =>
              status
                ? json(res, 200, status)
                : json(res, 404, { status: 'not found', detail: `no partner "${partner}"` }),
            (err: unknown) =>
              json(res, 503, {
                status: 'unavailable',
                detail: plainStoreError(err),
              }),
          );
          return;
        }
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"status":"not found"}\n');
      }
    }
  });
}
