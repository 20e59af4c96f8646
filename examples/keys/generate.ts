// Regenerates the example issuer's signing keys: examples/keys/jwks.json (public) and
// examples/keys/signing-keys.json (private). EXAMPLE keys only — see README.md.
// Run from the repository root: node --import tsx examples/keys/generate.ts
import { writeFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

const DIR = new URL('./', import.meta.url);
const KEYS = [
  { kid: 'example-rs256-1', alg: 'RS256' },
  { kid: 'example-es256-1', alg: 'ES256' },
] as const;

const publicKeys: JWK[] = [];
const privateKeys: JWK[] = [];
for (const { kid, alg } of KEYS) {
  const pair = await generateKeyPair(alg, { extractable: true }); // RSA: 2048 bits, jose's default
  const meta = { kid, alg, use: 'sig' };
  publicKeys.push({ ...(await exportJWK(pair.publicKey)), ...meta });
  privateKeys.push({ ...(await exportJWK(pair.privateKey)), ...meta });
}

writeFileSync(new URL('jwks.json', DIR), `${JSON.stringify({ keys: publicKeys }, null, 2)}\n`);
writeFileSync(new URL('signing-keys.json', DIR), `${JSON.stringify({ keys: privateKeys }, null, 2)}\n`);
console.log(`wrote jwks.json and signing-keys.json (${KEYS.map((k) => k.kid).join(', ')})`);
