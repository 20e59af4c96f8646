// The Check listener: the gRPC server that carries Envoy's Check calls, with the standard gRPC
// health service beside it. Started and stopped by app.ts; the handler is server.ts.
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { authorizationService, type CheckHandlerDeps, checkHandler } from './server.js';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';

export interface CheckListenerOptions {
  readonly address: string;
  readonly maxMessageBytes: number;
  readonly handler: CheckHandlerDeps;
}

export interface CheckListener {
  readonly port: number;
  /** Health of the server ('') and of the Authorization service: SERVING or NOT_SERVING. */
  setServing(serving: boolean): void;
  /** Stop accepting, let in-flight calls finish; after `graceMs`, close the remaining ones. */
  shutdown(graceMs: number, logger: Logger): Promise<void>;
}

/** Binds the Check server, health NOT_SERVING until the caller says otherwise. */
export async function listenForChecks(options: CheckListenerOptions): Promise<CheckListener> {
  const health = new HealthImplementation({ '': 'NOT_SERVING', [AUTHORIZATION_SERVICE]: 'NOT_SERVING' });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  server.addService(authorizationService, {
    Check: checkHandler(options.handler),
  });
  health.addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.address, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    );
  });

  return {
    port,
    setServing(serving: boolean) {
      const status = serving ? 'SERVING' : 'NOT_SERVING';
      health.setStatus('', status);
      health.setStatus(AUTHORIZATION_SERVICE, status);
    },
    shutdown(graceMs: number, logger: Logger) {
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          logger.warn('grace period over: closing remaining calls');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
