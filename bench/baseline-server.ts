// The transport's ceiling: a bare grpc-js Check server that answers a constant OK, with the same
// grpc-js version and server options as portcullis. Usage: baseline-server.ts HOST:PORT
import * as grpc from '@grpc/grpc-js';
import { checkCodec } from '../src/envoy/codec.js';
import { authorizationService } from '../src/envoy/server.js';

const address = process.argv[2] ?? '127.0.0.1:9101';
const ok = checkCodec().encodeResponse({
  status: { code: 0 },
  ok_response: {
    headers: [],
    headers_to_remove: [],
    response_headers_to_add: [],
    query_parameters_to_remove: [],
  },
  dynamic_metadata: { fields: {} },
});
const server = new grpc.Server({
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
  'grpc.max_send_message_length': 4 * 1024 * 1024,
});
server.addService(authorizationService, {
  Check: (_call: unknown, cb: grpc.sendUnaryData<Uint8Array>) => cb(null, ok),
});
server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ msg: 'serving', grpc_port: port })}\n`);
});
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
