// The identity of a set of policy files: sha256 over the files sorted by name, each as its name,
// its length and its text. Names are relative to the policy directory, so the hash does not
// depend on where the directory is; the length makes the encoding unambiguous.
import { createHash } from 'node:crypto';
import { compareText } from './diagnostic.ts';
import type { PolicySource } from './source.ts';

export function contentHash(sources: readonly PolicySource[]): string {
  const hash = createHash('sha256');
  for (const source of [...sources].sort((a, b) => compareText(a.name, b.name))) {
    const text = Buffer.from(source.text, 'utf8');
    hash.update(`${source.name}\0${text.length}\0`);
    hash.update(text);
  }
  return `sha256:${hash.digest('hex')}`;
}

/** JSON with object keys sorted, for comparing values that went through jsonb (which reorders). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => compareText(a, b)))
      : v,
  );
}
