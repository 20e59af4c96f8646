// `portcullis quota status --partner ID`: a partner's limits, read from a running server's admin API.
import { parseArgs } from 'node:util';
import { humanDuration } from '../quota/reset.js';
import type { QuotaStatus } from '../quota/status.js';
import { QUOTA_HELP } from './help.js';

export async function quotaCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      partner: { type: 'string' },
      admin: { type: 'string', default: 'http://127.0.0.1:9090' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (sub !== 'status' || values.help || !values.partner) {
    process.stderr.write(QUOTA_HELP);
    return values.help ? 0 : 2;
  }
  const url = `${values.admin.replace(/\/$/, '')}/v1/partners/${encodeURIComponent(values.partner)}/quota`;
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as QuotaStatus & { detail?: string };
  if (res.status === 404) {
    process.stderr.write(`portcullis: ${body.detail ?? 'not found'}\n`);
    return 1;
  }
  if (!res.ok) throw new Error(body.detail ?? `admin server answered ${res.status}`);
  process.stdout.write(values.json ? `${JSON.stringify(body, null, 2)}\n` : renderQuota(body));
  return 0;
}

function renderQuota(status: QuotaStatus): string {
  const rows = status.limits.map((l) => [
    l.name + (l.shadow ? ' (shadow)' : ''),
    l.algorithm,
    `${l.limit}/${l.period}${l.burst !== null ? ` burst ${l.burst}` : ''}`,
    String(l.used),
    String(l.remaining),
    humanDuration(l.reset_seconds),
    l.routes.length > 0 ? l.routes.join(',') : '*',
  ]);
  const head = ['LIMIT', 'ALGORITHM', 'QUOTA', 'USED', 'LEFT', 'RESET', 'ROUTES'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return `partner ${status.partner} (time zone ${status.time_zone})\n${[head, ...rows].map(line).join('\n')}\n`;
}
