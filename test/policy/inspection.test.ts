// Which rules need inspected tunnels (src/policy/inspection.ts), and how plan says so.
import { describe, expect, it } from 'vitest';
import { validatePolicies } from '../../src/policy/index.ts';
import { formatInspectionNotes, rulesNeedingInspection } from '../../src/policy/inspection.ts';
import { runReins } from '../support/run-reins.ts';
import { exampleSources, validate, yaml } from './support.ts';

function modelOf(files: Record<string, string>) {
  const { model, diagnostics } = validate(files);
  if (model === null) throw new Error(JSON.stringify(diagnostics));
  return model;
}

describe('rules needing inspection', () => {
  it('are the https rules scoped to methods or paths on an origin not granted whole', () => {
    const model = modelOf({
      'a.yaml': yaml(
        'tenant: a',
        'agents:',
        '  x:',
        '    auth: { method: client_secret_basic, secret_env: X }',
        '    egress:',
        '      - "POST,GET https://api.stripe.com/v1/"',
        '      - "GET https://docs.example.com/"',
        '      - "https://whole.example.com/"',
        '      - "GET https://whole.example.com/v1/"',
        '      - "GET http://plain.example.com/v1/"',
      ),
    });
    expect([...rulesNeedingInspection(model)].sort((p, q) => p.rule.localeCompare(q.rule))).toEqual(
      [
        { tenant: 'a', agent: 'x', rule: 'GET https://docs.example.com/' },
        { tenant: 'a', agent: 'x', rule: 'GET,POST https://api.stripe.com/v1' },
      ].sort((p, q) => p.rule.localeCompare(q.rule)),
    );
  });

  it('are listed for the example billing agent, and called refused when interception is off', () => {
    const { model } = validatePolicies(exampleSources());
    if (model === null) throw new Error('examples invalid');
    const notes = rulesNeedingInspection(model);
    expect(notes).toContainEqual({
      tenant: 'acme',
      agent: 'billing-agent',
      rule: 'GET,POST https://api.stripe.com/v1',
    });
    expect(formatInspectionNotes(notes, 'auto')).toContain('inspects CONNECT tunnels');
    expect(formatInspectionNotes(notes, 'never')).toContain('REFUSED (connect_needs_whole_origin)');
    expect(formatInspectionNotes([], 'never')).toBe('');
  });

  it('are printed by reins policy plan, for the interception mode asked for', async () => {
    const run = await runReins(
      ['policy', 'plan', '--data-dir', 'memory', '--intercept', 'never', 'policies/'],
      {
        DATABASE_URL: '',
      },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('REINS_GATEWAY_INTERCEPT=never');
    expect(run.stdout).toContain('acme agent billing-agent: GET,POST https://api.stripe.com/v1');
  }, 60_000);
});
