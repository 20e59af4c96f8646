// Client certificates: parsed once per distinct certificate (bounded LRU), for the SPIFFE id,
// the subject and the SHA-256 thumbprint that certificate-bound tokens (RFC 8705) refer to.
import { createHash, X509Certificate } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface ClientCertificate {
  /** As Envoy computes `source.principal`: first URI SAN, else first DNS SAN, else the subject. */
  readonly principal: string;
  readonly spiffeId: string | null;
  readonly subject: string;
  /** base64url(SHA-256(DER)): the `x5t#S256` of RFC 8705. */
  readonly thumbprint: string;
}

export class CertificateReader {
  private readonly cache: LRUCache<string, ClientCertificate | false>;

  constructor(maxEntries = 1000) {
    this.cache = new LRUCache({ max: maxEntries });
  }

  /** null when there is no certificate or it does not parse. */
  read(pem: string): ClientCertificate | null {
    if (pem === '') return null;
    let cert = this.cache.get(pem);
    if (cert === undefined) {
      cert = parse(pem);
      this.cache.set(pem, cert);
    }
    return cert || null;
  }
}

function parse(pem: string): ClientCertificate | false {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch {
    return false;
  }
  const sans = (x509.subjectAltName ?? '').split(', ');
  const uri = sans.find((s) => s.startsWith('URI:'))?.slice(4) ?? null;
  const dns = sans.find((s) => s.startsWith('DNS:'))?.slice(4) ?? null;
  const subject = x509.subject.split('\n').reverse().join(',');
  return Object.freeze({
    principal: uri ?? dns ?? subject,
    spiffeId: uri?.startsWith('spiffe://') ? uri : null,
    subject,
    thumbprint: createHash('sha256').update(x509.raw).digest('base64url'),
  });
}

/** What an Envoy-set x-forwarded-client-cert element tells us about the client certificate. */
export interface XfccIdentity {
  readonly principal: string;
  /** base64url SHA-256 of the DER, converted from XFCC's hex `Hash`; '' when absent. */
  readonly thumbprint: string;
}

/**
 * Parses the last element of x-forwarded-client-cert (the one the nearest Envoy added):
 * `By=...;Hash=<hex>;Subject="...";URI=...;DNS=...`. Only trust it when Envoy sanitises the header
 * (forward_client_cert_details: SANITIZE_SET), which the catalog states with `trust_xfcc`.
 */
export function parseXfcc(header: string): XfccIdentity | null {
  const last = splitOutsideQuotes(header, ',')?.at(-1);
  const pairs = last === undefined ? null : splitOutsideQuotes(last, ';');
  if (!pairs) return null;
  const fields = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return null;
    const key = pair.slice(0, eq).trim().toLowerCase();
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    }
    // URI and DNS may repeat; the first one is the one Envoy's principal uses.
    if (!fields.has(key)) fields.set(key, value);
  }
  const principal = fields.get('uri') || fields.get('dns') || fields.get('subject') || '';
  if (!principal) return null;
  const hash = fields.get('hash') ?? '';
  const thumbprint = /^[0-9a-fA-F]{64}$/.test(hash) ? Buffer.from(hash, 'hex').toString('base64url') : '';
  return { principal, thumbprint };
}

/** Splits on `separator` outside double quotes; null when a quote is left open. */
function splitOutsideQuotes(text: string, separator: string): string[] | null {
  const parts: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === separator && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (quoted) return null;
  parts.push(text.slice(start));
  return parts.filter((p) => p.trim() !== '');
}
