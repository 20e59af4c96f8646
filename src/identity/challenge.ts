// WWW-Authenticate challenges (RFC 6750 §3, RFC 9470): what a 401/403 tells the partner's client.
// Values are quoted-strings: quotes and backslashes escaped, control characters dropped.

export function quoted(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: dropping control characters is the point.
  return `"${value.replace(/[\u0000-\u001f\u007f]/g, '').replace(/["\\]/g, '\\$&')}"`;
}

export function challenge(scheme: string, params: Readonly<Record<string, string | undefined>>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params))
    if (value !== undefined) parts.push(`${key}=${quoted(value)}`);
  return parts.length > 0 ? `${scheme} ${parts.join(', ')}` : scheme;
}
