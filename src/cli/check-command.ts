// `portcullis check URL`: one CheckRequest to a running server, its answer rendered.
import { parseArgs } from 'node:util';
import { sendCheck } from '../envoy/client.js';
import { buildCheckRequest, renderResponse, UsageError } from './check.js';
import { CHECK_HELP } from './help.js';

export async function checkCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    options: {
      request: { type: 'string', short: 'X' },
      header: { type: 'string', short: 'H', multiple: true },
      data: { type: 'string', short: 'd' },
      principal: { type: 'string' },
      cert: { type: 'string' },
      route: { type: 'string' },
      source: { type: 'string', default: '127.0.0.1' },
      server: { type: 'string', default: '127.0.0.1:9001' },
      'timeout-ms': { type: 'string', default: '1000' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(CHECK_HELP);
    return 0;
  }
  const target = positionals[0];
  if (!target) throw new UsageError('check needs a URL or a path');
  const request = buildCheckRequest({
    target,
    method: values.request,
    headers: values.header ?? [],
    data: values.data,
    principal: values.principal,
    cert: values.cert,
    route: values.route,
    source: values.source,
    server: values.server,
    timeoutMs: Number(values['timeout-ms']),
  });
  const response = await sendCheck(values.server, request, Number(values['timeout-ms']));
  process.stdout.write(`${values.json ? JSON.stringify(response, null, 2) : renderResponse(response)}\n`);
  return response.status?.code === 0 ? 0 : 1;
}
