// A Check client built the way any third party would: @grpc/proto-loader over Envoy's OFFICIAL
// protos (from @grpc/grpc-js-xds), independent of our own protos and protobufjs codec.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const require = createRequire(import.meta.url);
export const XDS_DEPS = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
export const OFFICIAL_INCLUDE_DIRS = ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) =>
  join(XDS_DEPS, d),
);

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
  includeDirs: OFFICIAL_INCLUDE_DIRS,
};

type ClientCtor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;

function loadService(file: string, path: readonly string[]): ClientCtor {
  const definition = protoLoader.loadSync(file, LOADER_OPTIONS);
  let node: unknown = grpc.loadPackageDefinition(definition);
  for (const part of path) node = (node as Record<string, unknown>)[part];
  return node as ClientCtor;
}

/** The decoded CheckResponse, as proto-loader gives it (keepCase, enums as names). */
export interface OfficialHeaderOption {
  header: { key: string; value: string };
  append?: { value?: boolean };
}
export interface OfficialCheckResponse {
  status: { code?: number; message?: string };
  http_response?: 'ok_response' | 'denied_response';
  ok_response?: {
    headers?: OfficialHeaderOption[];
    headers_to_remove?: string[];
    response_headers_to_add?: OfficialHeaderOption[];
  };
  denied_response?: { status: { code: string }; headers?: OfficialHeaderOption[]; body?: string };
  dynamic_metadata?: { fields: Record<string, { stringValue?: string }> };
}

export class OfficialCheckClient {
  private readonly client: grpc.Client & Record<string, unknown>;
  constructor(address: string) {
    const Authorization = loadService('envoy/service/auth/v3/external_auth.proto', [
      'envoy',
      'service',
      'auth',
      'v3',
      'Authorization',
    ]);
    this.client = new Authorization(address, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, unknown>;
  }

  check(request: object, timeoutMs = 2000): Promise<OfficialCheckResponse> {
    const method = this.client.Check as (
      req: object,
      options: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: OfficialCheckResponse) => void,
    ) => void;
    return new Promise((resolve, reject) => {
      method.call(this.client, request, { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  /** Sends arbitrary bytes as a Check request body: what a broken or hostile client could do. */
  checkRaw(bytes: Buffer, timeoutMs = 2000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        '/envoy.service.auth.v3.Authorization/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err || !res ? reject(err) : resolve(res)),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export function healthClient(address: string): grpc.Client & Record<string, unknown> {
  const Health = loadService(
    join(dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1/health.proto'),
    ['grpc', 'health', 'v1', 'Health'],
  );
  return new Health(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, unknown>;
}

/**
 * One Check over a raw HTTP/2 stream whose `grpc-timeout` says `envoyTimeoutMs` (what the server sees
 * as Envoy's deadline) while the test waits up to `waitMs` for the answer: to read what the server
 * decided even when a loaded machine makes it answer after that deadline.
 */
export async function checkWithEnvoyTimeout(
  address: string,
  request: object,
  envoyTimeoutMs: number,
  waitMs = 10_000,
): Promise<OfficialCheckResponse> {
  const { connect } = await import('node:http2');
  const service = (
    loadService('envoy/service/auth/v3/external_auth.proto', [
      'envoy',
      'service',
      'auth',
      'v3',
      'Authorization',
    ]) as unknown as grpc.ServiceClientConstructor
  ).service.Check;
  if (!service) throw new Error('no Check method in the official protos');
  const message = service.requestSerialize(request);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  const session = connect(`http://${address}`);
  try {
    return await new Promise<OfficialCheckResponse>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${waitMs} ms`)), waitMs);
      session.on('error', reject);
      const stream = session.request({
        ':method': 'POST',
        ':path': '/envoy.service.auth.v3.Authorization/Check',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${envoyTimeoutMs}m`,
      });
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', reject);
      stream.on('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        if (body.length < 5) return reject(new Error('no response message (the call failed)'));
        resolve(
          service.responseDeserialize(body.subarray(5, 5 + body.readUInt32BE(1))) as OfficialCheckResponse,
        );
      });
      stream.end(frame);
    });
  } finally {
    session.close();
  }
}
