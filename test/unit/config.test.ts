// Process settings: flags over env over defaults, and a named error for every bad value.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveServeConfig, SERVE_DEFAULTS } from '../../src/config.js';

test('defaults, then env, then flags', () => {
  assert.deepEqual(resolveServeConfig({}, {}), SERVE_DEFAULTS);
  const env = { PORTCULLIS_GRPC_ADDRESS: '127.0.0.1:7000', PORTCULLIS_SHUTDOWN_GRACE_MS: '500' };
  assert.equal(resolveServeConfig({}, env).grpcAddress, '127.0.0.1:7000');
  assert.equal(resolveServeConfig({ grpcAddress: '[::1]:7001' }, env).grpcAddress, '[::1]:7001');
  assert.equal(resolveServeConfig({}, env).shutdownGraceMs, 500);
});

test('an empty environment variable counts as unset', () => {
  const config = resolveServeConfig({}, { PORTCULLIS_SHUTDOWN_GRACE_MS: '', PORTCULLIS_CONFIG: '' });
  assert.equal(config.shutdownGraceMs, SERVE_DEFAULTS.shutdownGraceMs);
  assert.equal(config.catalogFile, SERVE_DEFAULTS.catalogFile);
});

const refused: [string, Record<string, string>, RegExp][] = [
  ['log level', { logLevel: 'loud' }, /logLevel must be one of fatal, error/],
  [
    'message size below 64 KiB',
    { maxMessageBytes: '1024' },
    /maxMessageBytes \(PORTCULLIS_MAX_MESSAGE_BYTES\) must be an integer from 65536/,
  ],
  ['hex number', { maxMessageBytes: '0x100000' }, /got "0x100000"/],
  ['negative grace', { shutdownGraceMs: '-1' }, /shutdownGraceMs/],
  ['fraction', { drainDelayMs: '1.5' }, /drainDelayMs/],
  ['address without host', { grpcAddress: ':9001' }, /grpcAddress must be host:port/],
  ['port over 65535', { adminAddress: '127.0.0.1:99999' }, /adminAddress must be host:port/],
  ['address without port', { grpcAddress: 'localhost' }, /grpcAddress must be host:port/],
];
for (const [name, flags, error] of refused) {
  test(`refused: ${name}`, () => assert.throws(() => resolveServeConfig(flags, {}), error));
}

test('finding 14: the default gRPC bind is loopback (plaintext Check must not be open to the network)', () => {
  assert.equal(SERVE_DEFAULTS.grpcAddress, '127.0.0.1:9001');
  assert.equal(resolveServeConfig({}, {}).grpcAddress, '127.0.0.1:9001');
});

test('transport: http2 by default, grpc-js by flag or PORTCULLIS_TRANSPORT, anything else refused', () => {
  assert.equal(resolveServeConfig({}, {}).transport, 'http2');
  assert.equal(resolveServeConfig({}, { PORTCULLIS_TRANSPORT: 'grpc-js' }).transport, 'grpc-js');
  assert.equal(
    resolveServeConfig({ transport: 'http2' }, { PORTCULLIS_TRANSPORT: 'grpc-js' }).transport,
    'http2',
  );
  assert.throws(
    () => resolveServeConfig({ transport: 'connect' }, {}),
    /transport \(PORTCULLIS_TRANSPORT\) must be one of http2, grpc-js, got "connect"/,
  );
});
