// Envoy-shaped CheckRequests as plain objects (proto field names), the way Envoy fills them:
// pseudo-headers in the map, no `host`, x-request-id in headers, `http.id` a stream number.
import { randomUUID } from 'node:crypto';

export interface RequestSpec {
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  principal?: string;
  certificate?: string;
  sourceAddress?: string;
  route?: string;
  requestId?: string;
}

export function envoyRequest(spec: RequestSpec = {}): Record<string, unknown> {
  const method = spec.method ?? 'GET';
  const path = spec.path ?? '/v1/orders';
  const host = spec.host ?? 'api.example.com';
  const requestId = spec.requestId ?? randomUUID();
  const headers: Record<string, string> = {
    ':authority': host,
    ':method': method,
    ':path': path,
    ':scheme': 'https',
    'user-agent': 'partner-sdk/2.3.1',
    accept: 'application/json',
    'x-forwarded-proto': 'https',
    'x-request-id': requestId,
    ...spec.headers,
  };
  if (spec.body) {
    headers['content-length'] ??= String(spec.body.length);
    headers['x-envoy-auth-partial-body'] ??= 'false';
  }
  return {
    attributes: {
      source: {
        address: { socket_address: { address: spec.sourceAddress ?? '192.0.2.10', port_value: 53211 } },
        principal: spec.principal ?? '',
        certificate: spec.certificate ?? '',
      },
      destination: { address: { socket_address: { address: '10.0.0.5', port_value: 8443 } } },
      request: {
        time: { seconds: '1795000000', nanos: 0 },
        http: {
          id: '13249879826382',
          method,
          headers,
          path,
          host,
          scheme: 'https',
          size: String(spec.body?.length ?? 0),
          protocol: 'HTTP/2',
          raw_body: spec.body ?? Buffer.alloc(0),
        },
      },
      context_extensions: spec.route ? { route: spec.route } : {},
      tls_session: { sni: host },
    },
  };
}
