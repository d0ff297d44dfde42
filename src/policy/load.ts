// Reads a policy directory: every *.yaml and *.yml file in it and in its subdirectories (so a
// large deployment can keep one folder per tenant), sorted by path. Hidden files and folders
// (.git, editor swap files) are skipped, and so is anything that is not YAML (keys/, README.md).
// I/O only; validation happens on the returned sources.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { compareText } from './diagnostic.ts';
import type { PolicySource } from './source.ts';

export type LoadErrorCode = 'policy_dir_missing' | 'policy_dir_empty' | 'policy_file_unreadable';

export class PolicyLoadError extends Error {
  constructor(
    readonly code: LoadErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PolicyLoadError';
  }
}

const YAML_FILE = /\.ya?ml$/i;

export async function loadPolicyDir(dir: string): Promise<PolicySource[]> {
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory()) {
    throw new PolicyLoadError('policy_dir_missing', `${dir}: no such policy directory`);
  }
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const names = entries
    .filter((entry) => entry.isFile() && YAML_FILE.test(entry.name))
    .map((entry) => relativeName(dir, join(entry.parentPath, entry.name)))
    .filter((name) => !name.split('/').some((part) => part.startsWith('.')))
    .sort(compareText);
  if (names.length === 0) {
    // Applying "nothing" would delete every tenant: a mistyped path must not do that.
    throw new PolicyLoadError('policy_dir_empty', `${dir}: no policy files (*.yaml, *.yml) found`);
  }
  return Promise.all(
    names.map(async (name) => {
      const file = join(dir, ...name.split('/'));
      try {
        return { file, name, text: await readFile(file, 'utf8') };
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        throw new PolicyLoadError('policy_file_unreadable', `${file}: cannot read: ${reason}`);
      }
    }),
  );
}

function relativeName(dir: string, path: string): string {
  const root = join(dir, '.');
  const rel = path.startsWith(root + sep) ? path.slice(root.length + 1) : path;
  return rel.split(sep).join('/');
}
