// Real X.509 material for identity tests, made by the `openssl` CLI (not by src/, not by node's
// crypto): one test CA per process and client certificates signed by it, with the subject and SANs
// asked for. Each certificate comes with what Envoy would send (`urlEncoded`, the way
// `source.certificate` carries it) and its RFC 8705 thumbprint computed independently of src/:
// openssl converts the certificate to DER and node hashes those bytes. Everything is cached per
// process (an ECDSA P-256 key and certificate cost a few ms of openssl each); the temporary
// directories openssl works in are removed before each call returns.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertSpec {
  /** Subject common name. */
  readonly cn: string;
  /**
   * Further subject attributes, most general first, e.g. `{ C: 'FR', O: 'Acme' }`; the CN comes last,
   * as in `-subj /C=FR/O=Acme/CN=acme`.
   */
  readonly subject?: Readonly<Record<string, string>>;
  /** URI SANs, e.g. a SPIFFE id. The first one is Envoy's `source.principal`. */
  readonly uris?: readonly string[];
  /** DNS SANs: the principal when there is no URI SAN. */
  readonly dns?: readonly string[];
  /**
   * Tells apart two certificates with the same subject and SANs (another key, another thumbprint):
   * the partner's second certificate, or a thief's copy of its names.
   */
  readonly variant?: string;
}

export interface TestCertificate {
  /** PEM, as the client presented it. */
  readonly pem: string;
  /** `encodeURIComponent(pem)`: what Envoy puts in `source.certificate`. */
  readonly urlEncoded: string;
  /** base64url(SHA-256(DER)): the `cnf["x5t#S256"]` a bound token carries (RFC 8705). */
  readonly thumbprint: string;
  /** hex(SHA-256(DER)): the `Hash` Envoy writes into x-forwarded-client-cert. */
  readonly hashHex: string;
  /** The first URI SAN when it is a `spiffe://` id, else null. */
  readonly spiffeId: string | null;
  /** The subject, RFC 2253 style as Envoy prints it (most specific first): `CN=acme,O=Acme`. */
  readonly subject: string;
}

export interface TestCa {
  readonly pem: string;
  readonly keyPem: string;
}

let ca: TestCa | undefined;
const issued = new Map<string, TestCertificate>();

/** Runs openssl in a fresh temporary directory that is always removed afterwards. */
function inTempDir<T>(work: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-certs-'));
  try {
    return work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function openssl(dir: string, args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err: unknown) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString('utf8') ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr || String(err)}`);
  }
}

/** The process's test CA (ECDSA P-256, valid two days), made on first use. */
export function testCa(): TestCa {
  ca ??= inTempDir((dir) => {
    openssl(dir, [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=portcullis test CA/O=portcullis tests',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return {
      pem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
      keyPem: readFileSync(join(dir, 'ca.key'), 'utf8'),
    };
  });
  return ca;
}

/** A client certificate signed by the test CA. The same spec gives the same certificate. */
export function clientCertificate(spec: CertSpec): TestCertificate {
  const cacheKey = JSON.stringify([
    spec.cn,
    spec.subject ?? {},
    spec.uris ?? [],
    spec.dns ?? [],
    spec.variant,
  ]);
  const cached = issued.get(cacheKey);
  if (cached) return cached;
  const authority = testCa();
  const made = inTempDir((dir) => {
    writeFileSync(join(dir, 'ca.pem'), authority.pem);
    writeFileSync(join(dir, 'ca.key'), authority.keyPem, { mode: 0o600 });
    const subj = rdns(spec)
      .map(([k, v]) => `/${k}=${v.replace(/[/\\]/g, '\\$&')}`)
      .join('');
    openssl(dir, [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'client.key',
      '-out',
      'client.csr',
      '-subj',
      subj,
    ]);
    const sans = [...(spec.uris ?? []).map((u) => `URI:${u}`), ...(spec.dns ?? []).map((d) => `DNS:${d}`)];
    const extensions = [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=clientAuth',
      ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
    ];
    writeFileSync(join(dir, 'ext.cnf'), `${extensions.join('\n')}\n`);
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      'client.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-set_serial',
      `0x${createHash('sha256').update(cacheKey).digest('hex').slice(0, 30)}`,
      '-days',
      '2',
      '-extfile',
      'ext.cnf',
      '-out',
      'client.pem',
    ]);
    openssl(dir, ['x509', '-in', 'client.pem', '-outform', 'der', '-out', 'client.der']);
    return { pem: readFileSync(join(dir, 'client.pem'), 'utf8'), der: readFileSync(join(dir, 'client.der')) };
  });
  const digest = createHash('sha256').update(made.der).digest();
  const firstUri = spec.uris?.[0];
  const certificate: TestCertificate = Object.freeze({
    pem: made.pem,
    urlEncoded: encodeURIComponent(made.pem),
    thumbprint: digest.toString('base64url'),
    hashHex: digest.toString('hex'),
    spiffeId: firstUri?.startsWith('spiffe://') ? firstUri : null,
    subject: rdns(spec)
      .reverse()
      .map(([k, v]) => `${k}=${rfc2253(v)}`)
      .join(','),
  });
  issued.set(cacheKey, certificate);
  return certificate;
}

/** An attribute value escaped as RFC 2253 (and Envoy's subject) writes it. */
function rfc2253(value: string): string {
  return value
    .replace(/[,+"\\<>;]/g, '\\$&')
    .replace(/^[ #]/, '\\$&')
    .replace(/ $/, '\\ ');
}

/** The subject's attributes in certificate order: most general first, CN last. */
function rdns(spec: CertSpec): [string, string][] {
  return [...Object.entries(spec.subject ?? {}), ['CN', spec.cn]];
}
