// The API key pepper: a server-side secret, never in the catalog. Without it the catalog's hashes
// cannot be brute-forced offline; with it leaked, they can — so it lives in a Secret, not a ConfigMap.
import { readFile } from 'node:fs/promises';
import { DEFAULT_CATALOG, EXAMPLE_PEPPER_FILE, PEPPER_ENV, type ServeConfig } from '../config.js';
import { MIN_PEPPER_BYTES } from './apikeys.js';

/**
 * The pepper from PORTCULLIS_API_KEY_PEPPER, else the configured file, else — only for the embedded
 * example catalog — the example pepper. null when none is configured.
 */
export async function loadPepper(
  config: Pick<ServeConfig, 'apiKeyPepperFile' | 'catalogFile'>,
  env: NodeJS.ProcessEnv,
): Promise<Buffer | null> {
  let text = env[PEPPER_ENV] || undefined;
  let source = PEPPER_ENV;
  if (text === undefined) {
    const file =
      config.apiKeyPepperFile || (config.catalogFile === DEFAULT_CATALOG ? EXAMPLE_PEPPER_FILE : undefined);
    if (file === undefined) return null;
    source = file;
    try {
      text = await readFile(file, 'utf8');
    } catch (err: unknown) {
      throw new Error(
        `cannot read the API key pepper file: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  const pepper = Buffer.from(text.trim(), 'utf8');
  if (pepper.length < MIN_PEPPER_BYTES) {
    throw new Error(`the API key pepper from ${source} must be at least ${MIN_PEPPER_BYTES} bytes`);
  }
  return pepper;
}
