// A Check client: sends one CheckRequest to a running server over gRPC, as Envoy does
// (`portcullis check`, and tests that need a real round trip).
import * as grpc from '@grpc/grpc-js';
import { plainRpcError } from '../plain-errors.js';
import { CHECK_PATH, checkCodec, type WireCheckResponse } from './codec.js';

const codec = checkCodec();

export async function sendCheck(
  server: string,
  request: object,
  timeoutMs: number,
): Promise<WireCheckResponse> {
  const client = new grpc.Client(server, grpc.credentials.createInsecure());
  try {
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest(
        CHECK_PATH,
        (value: Uint8Array) => Buffer.from(value),
        (value: Buffer) => value,
        codec.encodeRequest(request),
        { deadline: Date.now() + timeoutMs },
        (err, value) =>
          err || !value
            ? reject(new Error(err ? plainRpcError(err, server) : `${server} sent an empty response`))
            : resolve(value),
      );
    });
    return codec.decodeResponse(bytes);
  } finally {
    client.close();
  }
}
