// --token-command: the token is what a shell command prints; when it expires comes from the
// token's own `exp`. Failures say what went wrong and never show the output.
import { describe, expect, it } from 'vitest';
import { tokenCommand } from '../../src/agent-run/token-command.ts';

/** An unsigned JWT with these claims. */
function jwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'ES256', typ: 'at+jwt' })}.${part(claims)}.c2ln`;
}

const NOW = 1_800_000_000_000;
const TOKEN = jwt({ sub: 'alice', act: { sub: 'billing-agent' }, exp: NOW / 1000 + 300 });

describe('tokenCommand', () => {
  it('takes the trimmed output of a shell command as the token, and its exp as the expiry', async () => {
    const obtain = tokenCommand(`printf '  %s\\n\\n' "$DELEGATED" | cat`, { now: () => NOW });
    process.env.DELEGATED = TOKEN;
    try {
      expect(await obtain()).toEqual({ token: TOKEN, expiresAt: NOW + 300_000 });
    } finally {
      delete process.env.DELEGATED;
    }
  });

  it('runs the command again for every token', async () => {
    const obtain = tokenCommand(`echo ${TOKEN}; echo run >&2`, { now: () => NOW });
    const first = await obtain();
    const second = await obtain();
    expect(second).toEqual(first);
  });

  it.each([
    [
      'a failing command',
      'echo "$0" >/dev/null; exit 3',
      'token_command_failed',
      'the token command exited with 3',
    ],
    [
      'a command that cannot be found',
      'reins-no-such-token-helper',
      'token_command_failed',
      'the token command exited with 127',
    ],
    [
      'output that is not a JWT',
      'echo not-a-token',
      'token_command_output',
      'the token command did not print a JWT access token with an exp claim',
    ],
    [
      'a JWT without exp',
      `echo ${jwt({ sub: 'alice' })}`,
      'token_command_output',
      'the token command did not print a JWT access token with an exp claim',
    ],
    [
      'an expired JWT',
      `echo ${jwt({ sub: 'alice', exp: NOW / 1000 - 1 })}`,
      'token_command_output',
      'the token command printed an expired token',
    ],
  ])('refuses %s', async (_name, command, code, message) => {
    await expect(tokenCommand(command, { now: () => NOW })()).rejects.toMatchObject({ code, message });
  });

  it('stops a command that does not finish in time', async () => {
    await expect(tokenCommand('sleep 10', { timeoutMs: 200 })()).rejects.toMatchObject({
      code: 'token_command_failed',
      message: 'the token command was stopped after 200 ms',
    });
  });

  it('stops a command that prints more than 64 KiB', async () => {
    await expect(tokenCommand('head -c 100000 /dev/zero | tr "\\0" a')()).rejects.toMatchObject({
      code: 'token_command_output',
      message: 'the token command printed more than 64 KiB',
    });
  });
});
