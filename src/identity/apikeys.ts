// API keys, for partners that cannot do OAuth. The catalog holds only HMAC-SHA-256 hashes of the
// keys under a server-side pepper (never in the catalog): a leaked catalog leaks no key, and a
// lookup is one HMAC plus one map access, whatever the number of keys.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiKeyEntry, Catalog } from '../policy/catalog.js';

export const API_KEY_PREFIX = 'pcl_';
/** 32 random bytes: 256 bits, far beyond guessing. */
const KEY_BYTES = 32;
const MAX_KEY_LENGTH = 256;
const PRINTABLE = /^[\x21-\x7e]+$/;
/** Below this, the pepper is too weak to keep hashes from being brute-forced offline. */
export const MIN_PEPPER_BYTES = 32;

export function generateApiKey(): string {
  return `${API_KEY_PREFIX}${randomBytes(KEY_BYTES).toString('base64url')}`;
}

export function hashApiKey(key: string, pepper: Buffer): string {
  return createHmac('sha256', pepper).update(key).digest('base64url');
}

export type ApiKeyFailure = 'api_key_invalid' | 'api_key_expired' | 'api_key_revoked';
export type ApiKeyResult =
  | { readonly ok: true; readonly key: ApiKeyEntry }
  | {
      readonly ok: false;
      readonly failure: ApiKeyFailure;
      readonly reason: string;
      /** The partner the key belongs to, when it was found (revoked, expired): for the audit log. */
      readonly partner?: string;
    };

export class ApiKeyVerifier {
  /** `pepper` null = no pepper configured: every key is invalid (and serve refuses catalogs with keys). */
  constructor(private readonly pepper: Buffer | null) {}

  verify(catalog: Catalog, presented: string, nowMs: number): ApiKeyResult {
    if (!this.pepper || presented.length > MAX_KEY_LENGTH || !PRINTABLE.test(presented)) {
      return { ok: false, failure: 'api_key_invalid', reason: 'API key has an invalid form' };
    }
    const digest = createHmac('sha256', this.pepper).update(presented).digest();
    const entry = catalog.apiKeysByHash.get(digest.toString('base64url'));
    // The map finds the candidate; the constant-time comparison makes the verdict.
    if (!entry || !timingSafeEqual(entry.hash, digest)) {
      return { ok: false, failure: 'api_key_invalid', reason: 'API key matches no catalog entry' };
    }
    return checkKeyEntry(entry, nowMs);
  }
}

/** A key found in the catalog: is it still good (status, expiry)? */
export function checkKeyEntry(entry: ApiKeyEntry, nowMs: number): ApiKeyResult {
  if (entry.status === 'revoked') {
    return {
      ok: false,
      failure: 'api_key_revoked',
      reason: `API key ${entry.id} is revoked in the catalog`,
      partner: entry.partner.id,
    };
  }
  if (entry.expiresAt !== null && nowMs >= entry.expiresAt) {
    return {
      ok: false,
      failure: 'api_key_expired',
      reason: `API key ${entry.id} expired at ${new Date(entry.expiresAt).toISOString()}`,
      partner: entry.partner.id,
    };
  }
  return { ok: true, key: entry };
}

/** The catalog line for a new key: what `portcullis key create` prints. */
export function catalogEntry(id: string, key: string, pepper: Buffer, expiresAt?: string): string {
  const lines = [`- id: ${id}`, `  hash: hmac-sha256:${hashApiKey(key, pepper)}`];
  if (expiresAt) lines.push(`  expires_at: ${expiresAt}`);
  return lines.join('\n');
}
