// The admin HTTP server (loopback by default): /metrics, /healthz (process up), /readyz (serving).
import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics.js';

export interface AdminState {
  /** Ready = a catalog is loaded and we are not draining. */
  ready(): boolean;
  policy(): { version: string; name: string };
}

export function createAdminServer(metrics: Metrics, state: AdminState): Server {
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
        res
          .writeHead(ready ? 200 : 503, { 'content-type': 'application/json' })
          .end(`${JSON.stringify(body)}\n`);
        return;
      }
      case '/metrics':
        metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
        return;
      default:
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"status":"not found"}\n');
    }
  });
}
