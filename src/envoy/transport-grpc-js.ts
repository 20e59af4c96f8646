// The Check listener on @grpc/grpc-js (`serve --transport grpc-js`): the transport the project
// started with, kept selectable and tested in CI. grpc-js does the framing, deadlines, message
// limits and GOAWAY; Check bytes go to the shared handler unchanged.
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { CHECK_PATH } from './codec.js';
import { HEALTH_SERVICES, type Listener, type ListenerOptions } from './transport.js';

/** Check with identity (de)serializers: the shared handler decodes and encodes itself. */
export const authorizationService: grpc.ServiceDefinition = {
  Check: {
    path: CHECK_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Uint8Array) => Buffer.from(value),
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    responseDeserialize: (bytes: Buffer) => bytes,
  },
};

export async function startGrpcJsListener(options: ListenerOptions): Promise<Listener> {
  const health = new HealthImplementation(
    Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING' as const])),
  );
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  const check = options.check;
  server.addService(authorizationService, {
    Check: (call: grpc.ServerUnaryCall<Buffer, Uint8Array>, callback: grpc.sendUnaryData<Uint8Array>) => {
      const deadline = call.getDeadline();
      const answer = check(call.request, deadline instanceof Date ? deadline.getTime() : deadline);
      if (answer instanceof Promise) answer.then((bytes) => callback(null, bytes));
      else callback(null, answer);
    },
  });
  health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.address, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
  return {
    port,
    setServing(serving) {
      for (const s of HEALTH_SERVICES) health.setStatus(s, serving ? 'SERVING' : 'NOT_SERVING');
    },
    shutdown(graceMs, onForce) {
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          onForce();
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
