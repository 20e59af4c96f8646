// The gRPC listener that carries Check and grpc.health.v1, on one of two transports with the same
// behaviour: `http2` (our own gRPC framing on node:http2, the default: about half the CPU and a
// third of the garbage per call of grpc-js, see bench/README.md) or `grpc-js`.
import type { TransportName } from '../config.js';
import type { CheckHandler } from './server.js';

export { TRANSPORTS, type TransportName } from '../config.js';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';
/** The services health reports on: '' (the server as a whole) and the Check service. */
export const HEALTH_SERVICES = ['', AUTHORIZATION_SERVICE] as const;

export interface ListenerOptions {
  readonly address: string;
  /** Largest request message accepted; a larger one is refused with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  readonly check: CheckHandler;
}

export interface Listener {
  readonly port: number;
  /** SERVING or NOT_SERVING for every service, to Check callers and Watch streams alike. */
  setServing(serving: boolean): void;
  /**
   * Stop accepting (GOAWAY on HTTP/2), let calls in flight finish, and after `graceMs` cut the
   * rest (`onForce` is told). Resolves when every connection is closed.
   */
  shutdown(graceMs: number, onForce: () => void): Promise<void>;
}

export async function startListener(transport: TransportName, options: ListenerOptions): Promise<Listener> {
  if (transport === 'grpc-js') return (await import('./transport-grpc-js.js')).startGrpcJsListener(options);
  return (await import('./transport-http2.js')).startHttp2Listener(options);
}
