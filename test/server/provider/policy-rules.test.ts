// policyRules (src/server/provider/policy-rules.ts): the policy model's rule texts parsed once
// per policy version, and never changed by a caller.
import { describe, expect, it } from 'vitest';
import { formatRule } from '../../../src/egress/index.ts';
import { policyRules } from '../../../src/server/provider/policy-rules.ts';

describe('the policy model’s rules', () => {
  it('are parsed once per list the model holds', () => {
    const effectiveEgress = ['GET https://api.example.com/v1', 'https://b.example/'];
    const rules = policyRules(effectiveEgress);
    expect(rules.map(formatRule)).toEqual(effectiveEgress);
    expect(policyRules(effectiveEgress)).toBe(rules);
  });

  it('are parsed afresh for the lists of another policy version, though the text is the same', () => {
    const before = ['https://a.example/'];
    const after = [...before];
    expect(policyRules(after)).not.toBe(policyRules(before));
    expect(policyRules(after)).toEqual(policyRules(before));
  });

  it('leave out a text that does not parse rather than widen anything', () => {
    expect(policyRules(['get https://a.example/', 'GET https://b.example/']).map(formatRule)).toEqual([
      'GET https://b.example/',
    ]);
  });

  it('cannot be changed by a caller', () => {
    const rules = policyRules(['https://a.example/']);
    expect(() => (rules as unknown[]).push(rules[0])).toThrow(TypeError);
  });
});
