import { describe, expect, it } from 'vitest';
import { hashSecret, parseSecretHash, verifySecret } from '../../src/policy/secret-hash.ts';

describe('a secret hash', () => {
  const hash = hashSecret('correct horse battery staple');

  it('is an scrypt PHC string with the default cost', () => {
    expect(hash).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(parseSecretHash(hash).ok).toBe(true);
  });

  it('verifies the secret it was made from and nothing else', () => {
    expect(verifySecret('correct horse battery staple', hash)).toBe(true);
    expect(verifySecret('correct horse battery stapl', hash)).toBe(false);
    expect(verifySecret('', hash)).toBe(false);
  });

  it('is salted: the same secret hashes differently each time', () => {
    expect(hashSecret('s')).not.toBe(hashSecret('s'));
  });

  it.each([
    ['a hash in another format', 'sha256:abcd', 'must be in the form'],
    [
      'a cost below the minimum',
      '$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g',
      'ln must be between 14 and 20',
    ],
    [
      'a cost that would take gigabytes per check',
      '$scrypt$ln=20,r=32,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g',
      'more than 256 MiB',
    ],
    [
      'a short salt',
      '$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g',
      'salt must be at least 16 bytes',
    ],
    ['a short hash', '$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA', 'hash must be at least 32 bytes'],
  ])('refuses %s', (_, text, message) => {
    const parsed = parseSecretHash(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toContain(message);
    expect(verifySecret('anything', text)).toBe(false);
  });
});
