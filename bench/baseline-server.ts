// The transports' ceilings: a bare Check server that decodes the request with our protobufjs codec
// and answers a constant OK — nothing of portcullis but the framing. Usage:
//   baseline-server.ts HOST:PORT [grpc-js|http2|http2-raw|connect]
//   grpc-js    @grpc/grpc-js, same version and server options as portcullis --transport grpc-js
//   http2      portcullis' own node:http2 transport (src/envoy/transport-http2.ts)
//   http2-raw  the least gRPC unary server node:http2 allows (no limits, no health): the floor
//   connect    @connectrpc/connect-node's gRPC protocol handler on node:http2
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { checkCodec } from '../src/envoy/codec.js';
import type { Listener } from '../src/envoy/listener.js';
import { authorizationService } from '../src/envoy/transport-grpc-js.js';
import { startHttp2Listener } from '../src/envoy/transport-http2.js';

const address = process.argv[2] ?? '127.0.0.1:9101';
const kind = process.argv[3] ?? 'grpc-js';
const codec = checkCodec();
const ok = codec.encodeResponse({
  status: { code: 0 },
  ok_response: {
    headers: [],
    headers_to_remove: [],
    response_headers_to_add: [],
    query_parameters_to_remove: [],
  },
  dynamic_metadata: { fields: {} },
});
const [host, port] = [
  address.slice(0, address.lastIndexOf(':')),
  Number(address.slice(address.lastIndexOf(':') + 1)),
];
const serving = (p: number) => process.stdout.write(`${JSON.stringify({ msg: 'serving', grpc_port: p })}\n`);

if (kind === 'grpc-js') {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  server.addService(authorizationService, {
    Check: (call: grpc.ServerUnaryCall<Buffer, Uint8Array>, cb: grpc.sendUnaryData<Uint8Array>) => {
      codec.decodeRequest(call.request);
      cb(null, ok);
    },
  });
  server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => {
    if (err) throw err;
    serving(p);
  });
  process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
} else if (kind === 'http2') {
  const listener: Listener = await startHttp2Listener({
    address,
    maxMessageBytes: 8 * 1024 * 1024,
    check: async (message) => {
      codec.decodeRequest(message);
      return ok;
    },
  });
  listener.setServing(true);
  serving(listener.port);
  process.once('SIGTERM', () => listener.shutdown(1000, () => {}).then(() => process.exit(0)));
} else if (kind === 'http2-raw') {
  const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), ok]);
  framed.writeUInt32BE(ok.length, 1);
  const server = http2.createServer();
  server.on('stream', (stream) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      codec.decodeRequest(Buffer.concat(chunks).subarray(5));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(framed);
    });
  });
  server.listen(port, host, () => serving((server.address() as { port: number }).port));
  process.once('SIGTERM', () => process.exit(0));
} else if (kind === 'connect') {
  const { startConnectBaseline } = await import('./connect-baseline.js');
  const p = await startConnectBaseline(host, port, () => ok);
  serving(p);
  process.once('SIGTERM', () => process.exit(0));
} else {
  throw new Error(`unknown baseline ${kind}`);
}
