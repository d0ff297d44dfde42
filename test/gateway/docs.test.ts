// docs/gateway.md is the operators' list of deny reasons: it must name every one the code has.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DENY_REASONS } from '../../src/gateway/reasons.ts';

const DOC = readFileSync(new URL('../../docs/gateway.md', import.meta.url), 'utf8');

describe('the gateway documentation', () => {
  it.each(DENY_REASONS)('explains the deny reason %s', (reason) => {
    expect(DOC).toContain(`| \`${reason}\` |`);
  });
});
