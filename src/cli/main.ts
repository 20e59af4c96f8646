#!/usr/bin/env node
// The `portcullis` command: serve, check, policy validate.
// Each command's module is loaded when it runs: `portcullis help` or `key create` does not load the
// server, the policy tools or the gRPC stack (a CLI call starts in a fraction of the time).
import { HELP, helpFor } from './help.js';

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return (await import('./serve.js')).serveCommand(rest);
    case 'check':
      return (await import('./check-command.js')).checkCommand(rest);
    case 'policy':
      return (await import('./policy.js')).policyCommand(rest);
    case 'key':
      return (await import('./identity.js')).keyCommand(rest);
    case 'token':
      return (await import('./identity.js')).tokenCommand(rest);
    case 'revoke':
    case 'unrevoke':
      return (await import('./revoke.js')).revokeCommand(command, rest);
    case 'quota':
      return (await import('./quota.js')).quotaCommand(rest);
    case 'help':
    case '--help':
    case '-h':
    case undefined:
      process.stdout.write(helpFor(rest[0]));
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`portcullis: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
