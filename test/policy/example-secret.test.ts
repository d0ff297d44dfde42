// auth.example_secret: a secret published on purpose (the shipped examples). It must be the
// plaintext of the hash the server checks, and every validation says anyone can use it.
import { describe, expect, it } from 'vitest';
import { exampleCredentials } from '../../src/policy/examples.ts';
import { hashSecret } from '../../src/policy/secret-hash.ts';
import { at, errorsOf, sourcesOf, validate, warningsOf, where, yaml } from './support.ts';

const HASH = await hashSecret('published-example-secret');

function agent(auth: string): string {
  return yaml(
    'tenant: demo',
    'agents:',
    '  demo-agent:',
    `    auth: ${auth}`,
    '    egress: ["GET https://api.example.com/"]',
  );
}

describe('an example secret', () => {
  it('that matches its secret_hash validates, with a warning at the key that anyone can obtain tokens', () => {
    const file = agent(
      `{ method: client_secret_post, secret_hash: "${HASH}", example_secret: published-example-secret }`,
    );
    const result = validate({ 'demo.yaml': file });
    expect(errorsOf(result)).toEqual([]);
    const [warning] = warningsOf(result);
    expect(where(warning as never)).toBe(at('demo.yaml', file, 'published-example-secret'));
    expect(warning?.message).toContain("agent 'demo-agent' publishes its secret");
    expect(exampleCredentials(sourcesOf({ 'demo.yaml': file }))).toEqual([
      {
        tenant: 'demo',
        clientId: 'demo-agent',
        method: 'client_secret_post',
        secret: 'published-example-secret',
      },
    ]);
  });

  it('without the secret_hash it is the plaintext of is an error that says what to add', () => {
    const file = agent(
      '{ method: client_secret_basic, secret_env: DEMO, example_secret: published-example-secret }',
    );
    const [error] = errorsOf(validate({ 'demo.yaml': file }));
    expect(where(error as never)).toBe(at('demo.yaml', file, 'published-example-secret'));
    expect(error?.message).toContain('example_secret needs the secret_hash');
  });

  it('that does not match its secret_hash is an error: the printed commands would fail', () => {
    const file = agent(
      `{ method: client_secret_basic, secret_hash: "${HASH}", example_secret: another-secret-text }`,
    );
    const [error] = errorsOf(validate({ 'demo.yaml': file }));
    expect(error?.message).toContain('example_secret does not match secret_hash');
  });

  it('with characters a shell would interpret is refused by the schema', () => {
    const file = agent(
      `{ method: client_secret_basic, secret_hash: "${HASH}", example_secret: "a'b;$(rm -rf x)" }`,
    );
    expect(errorsOf(validate({ 'demo.yaml': file })).length).toBeGreaterThan(0);
  });
});
