// The API key pepper: a server-side secret, never in the catalog. Without it the catalog's hashes
// cannot be brute-forced offline; with it leaked, they can — so it lives in a Secret, not a ConfigMap.
//
// Where it comes from does not depend on where the catalog is: PORTCULLIS_API_KEY_PEPPER, else the
// file given by flag (or PORTCULLIS_API_KEY_PEPPER_FILE), else nothing. The one exception is the
// embedded demo: `serve` run without any catalog configured (no --config, no PORTCULLIS_CONFIG)
// serves the example catalog with the example pepper.
import { readFile } from 'node:fs/promises';
import { EXAMPLE_PEPPER_FILE, PEPPER_ENV, SERVE_ENV } from '../config.js';
import { MIN_PEPPER_BYTES } from './apikeys.js';

/** How to configure it, for every message that says it is missing or wrong. */
export const PEPPER_HOWTO = `pass --api-key-pepper-file FILE, or set ${SERVE_ENV.apiKeyPepperFile} (a file) or ${PEPPER_ENV} (the value)`;

/** A pepper that is configured but unusable, or missing where it is required: one line, no stack. */
export class PepperError extends Error {
  override readonly name = 'PepperError';
}

export interface PepperSource {
  /** The file from a flag or PORTCULLIS_API_KEY_PEPPER_FILE ('' = none). */
  readonly apiKeyPepperFile: string;
  /** The embedded demo (no catalog configured): the example pepper when no other is given. */
  readonly embeddedExample?: boolean;
}

/** The pepper, or null when none is configured. Throws a PepperError when it cannot be used. */
export async function loadPepper(source: PepperSource, env: NodeJS.ProcessEnv): Promise<Buffer | null> {
  let text = env[PEPPER_ENV] || undefined;
  let from = PEPPER_ENV;
  if (text === undefined) {
    const file = source.apiKeyPepperFile || (source.embeddedExample ? EXAMPLE_PEPPER_FILE : undefined);
    if (file === undefined) return null;
    from = file;
    try {
      text = await readFile(file, 'utf8');
    } catch (err: unknown) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(err);
      throw new PepperError(
        `cannot read the API key pepper file ${file} (--api-key-pepper-file, ${SERVE_ENV.apiKeyPepperFile}): ${reason}`,
      );
    }
  }
  const pepper = Buffer.from(text.trim(), 'utf8');
  if (pepper.length < MIN_PEPPER_BYTES) {
    throw new PepperError(`the API key pepper from ${from} must be at least ${MIN_PEPPER_BYTES} bytes`);
  }
  return pepper;
}

/** The refusal when a catalog with API keys meets no pepper. */
export function missingPepper(catalogFile: string, keys: number): string {
  return `${catalogFile} has ${keys} API key${keys === 1 ? '' : 's'} but no pepper is configured: ${PEPPER_HOWTO}`;
}
