import { runCli } from '../../src/cli/main.ts';

/** Runs the `switchyard` CLI in-process with `env`, capturing what it prints and its exit code. */
export async function runCliCaptured(argv: string[], env: Readonly<Record<string, string | undefined>>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
  });
  return { code, stdout, stderr };
}
