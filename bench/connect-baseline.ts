// The @connectrpc/connect-node candidate: Connect's gRPC protocol handler on node:http2, serving
// Authorization/Check with our protobufjs codec. Connect decodes with @bufbuild/protobuf and a
// schema; to keep our codec, the method is declared as BytesValue → BytesValue: a CheckRequest's
// field 1 (attributes) is length-delimited, so Connect hands us its bytes, which protobufjs
// decodes as an AttributeContext — the same work as decoding the CheckRequest. The answer is a
// constant of about the same size (the load generator reads only grpc-status).
import http2 from 'node:http2';
import { create, createFileRegistry } from '@bufbuild/protobuf';
import {
  BytesValueSchema,
  FileDescriptorProtoSchema,
  file_google_protobuf_wrappers,
} from '@bufbuild/protobuf/wkt';
import type { createConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { protoRoot } from '../src/envoy/codec.js';

export async function startConnectBaseline(
  host: string,
  port: number,
  handle: (attributes: Uint8Array) => Uint8Array,
): Promise<number> {
  const attributes = protoRoot().lookupType('envoy.service.auth.v3.AttributeContext');
  const file = create(FileDescriptorProtoSchema, {
    name: 'bench/authorization.proto',
    package: 'envoy.service.auth.v3',
    dependency: ['google/protobuf/wrappers.proto'],
    syntax: 'proto3',
    service: [
      {
        name: 'Authorization',
        method: [
          {
            name: 'Check',
            inputType: '.google.protobuf.BytesValue',
            outputType: '.google.protobuf.BytesValue',
          },
        ],
      },
    ],
  });
  const registry = createFileRegistry(file, (name) =>
    name === 'google/protobuf/wrappers.proto' ? file_google_protobuf_wrappers : undefined,
  );
  const service = registry.getService('envoy.service.auth.v3.Authorization');
  if (!service) throw new Error('no service');
  const routes = (router: ReturnType<typeof createConnectRouter>) => {
    router.service(service, {
      check: (req: { value: Uint8Array }) => {
        attributes.decode(req.value);
        return create(BytesValueSchema, { value: handle(req.value) });
      },
    } as never);
  };
  const server = http2.createServer(
    connectNodeAdapter({ routes, grpc: true, connect: false, grpcWeb: false }),
  );
  return new Promise((resolve) =>
    server.listen(port, host, () => resolve((server.address() as { port: number }).port)),
  );
}
