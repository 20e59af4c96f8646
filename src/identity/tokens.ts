// The token verifier of one catalog: a key set per issuer and one JwtVerifier over them.
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Catalog } from '../policy/catalog.js';
import { JwksCache } from './jwks.js';
import { JwtVerifier } from './jwt.js';

export interface Tokens {
  /** null when the catalog has no issuers. */
  readonly verifier: JwtVerifier | null;
  readonly keySets: ReadonlyMap<string, JwksCache>;
  /** Fetch every key set once, so the first Checks do not wait for the identity provider. */
  warm(): Promise<void>;
  close(): Promise<void>;
}

export function createTokens(catalog: Catalog, options: { clock: Clock; logger: Logger }): Tokens {
  const keySets = new Map<string, JwksCache>();
  for (const issuer of catalog.issuers) {
    keySets.set(issuer.name, new JwksCache(issuer.jwks, { ...options, name: issuer.name }));
  }
  const verifier =
    catalog.issuers.length === 0
      ? null
      : new JwtVerifier(
          catalog.issuers.map((issuer) => ({ ...issuer, keys: keySets.get(issuer.name) as JwksCache })),
          { clock: options.clock },
        );
  return {
    verifier,
    keySets,
    warm: async () => {
      await Promise.all([...keySets.values()].map((k) => k.refresh()));
    },
    close: async () => {
      await Promise.all([...keySets.values()].map((k) => k.close()));
    },
  };
}
