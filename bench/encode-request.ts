// Writes a gRPC-framed, Envoy-shaped CheckRequest (encoded with Envoy's OFFICIAL protos) for h2load.
// Usage: encode-request.ts OUT_FILE [principal]
import { writeFileSync } from 'node:fs';
import { loadOfficialRoot } from '../test/contract/official-protos.js';
import { envoyRequest } from '../test/support/envoy-request.js';

const [out = 'check.bin', principal = 'spiffe://partners.example.com/acme'] = process.argv.slice(2);
const fakePem = `-----BEGIN CERTIFICATE-----\n${'MIIDdzCCAl+gAwIBAgIUQk3l\n'.repeat(40)}-----END CERTIFICATE-----\n`;
const message = envoyRequest({
  principal,
  certificate: encodeURIComponent(fakePem),
  headers: {
    'accept-encoding': 'gzip, br',
    'x-forwarded-for': '192.0.2.10',
    'x-envoy-external-address': '192.0.2.10',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    'x-forwarded-client-cert':
      'By=spiffe://gw;Hash=4a5b;Subject="CN=acme";URI=spiffe://partners.example.com/acme',
  },
});
const type = loadOfficialRoot().lookupType('envoy.service.auth.v3.CheckRequest');
const bytes = type.encode(type.fromObject(message)).finish();
const frame = Buffer.alloc(5 + bytes.length);
frame.writeUInt32BE(bytes.length, 1);
Buffer.from(bytes).copy(frame, 5);
writeFileSync(out, frame);
process.stdout.write(`${out}: ${bytes.length} bytes CheckRequest\n`);
