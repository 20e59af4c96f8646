// The gRPC listener that carries Check and grpc.health.v1, on one of two transports with the same
// behaviour: `http2` (our own gRPC framing on node:http2, the default: about half the CPU and a
// third of the garbage per call of grpc-js, see bench/README.md) or `grpc-js`.
import type { TransportName } from '../config.js';

export { TRANSPORTS, type TransportName } from '../config.js';

export {
  AUTHORIZATION_SERVICE,
  HEALTH_SERVICES,
  type Listener,
  type ListenerOptions,
} from './transport.js';

import type { Listener, ListenerOptions } from './transport.js';

export async function startListener(transport: TransportName, options: ListenerOptions): Promise<Listener> {
  if (transport === 'grpc-js') return (await import('./transport-grpc-js.js')).startGrpcJsListener(options);
  return (await import('./transport-http2.js')).startHttp2Listener(options);
}
