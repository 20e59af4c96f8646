// The `portcullis` command as a user runs it, for integration tests: a real process (tsx on
// src/cli/main.ts), its exit code and output, and an environment without ambient pepper or catalog.
import { execFile } from 'node:child_process';

/** node arguments that run the CLI from source. */
export const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

/** The environment without any pepper or catalog setting: each test says what it sets. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const name of ['PORTCULLIS_API_KEY_PEPPER', 'PORTCULLIS_API_KEY_PEPPER_FILE', 'PORTCULLIS_CONFIG']) {
    if (!(name in extra)) delete env[name];
  }
  return env;
}

/** Runs `portcullis ...args` to completion (killed after `timeoutMs`); code -1 when it did not exit normally. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = cleanEnv(),
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...CLI, ...args], { timeout: timeoutMs, env }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
