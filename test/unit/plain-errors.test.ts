// Library error texts mapped to our words (src/plain-errors.ts), as logs and the CLI show them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { plainRpcError, plainStoreError } from '../../src/plain-errors.js';

const store: [string, Error, RegExp][] = [
  [
    'ioredis offline',
    new Error("Stream isn't writeable and enableOfflineQueue options is false"),
    /^Redis is not connected/,
  ],
  ['ioredis command timeout', new Error('Command timed out'), /^Redis did not answer in time$/],
  ['circuit open', new Error('circuit open: redis failed recently'), /^Redis is considered down/],
  ['circuit ramping', new Error('circuit half-open: ramping up'), /^Redis is back: charges are let through/],
  [
    'store timeout',
    new Error('no reply from redis within 100 ms of the command being sent'),
    /^Redis did not answer within 100 ms$/,
  ],
  [
    'refused',
    new Error('connect ECONNREFUSED 127.0.0.1:6390'),
    /^Redis refused the connection at 127\.0\.0\.1:6390$/,
  ],
  ['unknown', new Error('something new'), /^the quota store failed \(something new\)$/],
];
for (const [name, error, want] of store) {
  test(`a quota store failure in our words: ${name}`, () => assert.match(plainStoreError(error), want));
}

test('portcullis check with no server says so, without grpc-js "14 UNAVAILABLE … Resolution note"', () => {
  const error = Object.assign(
    new Error(
      '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:9001. Resolution note: ',
    ),
    { code: 14 },
  );
  const text = plainRpcError(error, '127.0.0.1:9001');
  assert.equal(
    text,
    'no portcullis is listening at 127.0.0.1:9001 (connection refused): start it, or pass --server',
  );
  assert.match(
    plainRpcError(Object.assign(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded'), { code: 4 }), 'x:1'),
    /did not answer in time/,
  );
});
