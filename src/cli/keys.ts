// `reins keys rotate` and `reins keys list`: the operator's handle on the token signing keys
// (src/server/keys). Neither ever prints private key material.
import { Command, Option } from 'commander';
import { DEFAULT_RETIRE_GRACE_MS, type KeyInfo, listKeys, rotateKeys } from '../server/keys/store.ts';
import type { Db } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { addDatabaseOptions, type DatabaseOptions, openDatabaseFromOptions } from './database-options.ts';
import { formatTable } from './table.ts';

interface KeysOptions extends DatabaseOptions {
  secretKey?: string | undefined;
}

const ROTATION_HELP =
  '\nRotation: `reins keys rotate` adds a new ES256 key that signs every new token from then on.\n' +
  'The previous key becomes "retiring": it signs nothing more but stays published in the JWKS,\n' +
  'so tokens it signed still verify. It is retired (dropped from the JWKS) only after\n' +
  `every token it signed has expired, and no sooner than ${DEFAULT_RETIRE_GRACE_MS / 60_000} minutes after the rotation, so that\n` +
  'running servers have picked up the new key.\n' +
  '\nPrivate keys are encrypted at rest with REINS_SECRET_KEY when it is set (give the same secret\n' +
  'as the servers; prefer the environment variable to --secret-key, which other users of the\n' +
  'machine can see in the process list). Without it they are stored unencrypted.\n' +
  '\nExit codes: 0 done, 1 the stored keys cannot be read with the secret given (missing, wrong,\n' +
  'or a damaged row), 3 the database is unavailable.\n';

function withDatabase(cmd: Command): Command {
  return addDatabaseOptions(cmd).addOption(
    new Option('--secret-key <secret>', 'secret that encrypts private keys at rest').env('REINS_SECRET_KEY'),
  );
}

// The keys live in the migrated schema; like `serve`, apply pending migrations first (safe from
// several processes at once), so the command also works on a database no server has touched yet.
async function useDatabase<T>(options: KeysOptions, work: (db: Db) => Promise<T>): Promise<T> {
  const db = await openDatabaseFromOptions(options);
  try {
    await migrate(db);
    return await work(db);
  } finally {
    await db.close();
  }
}

function rotateCommand(): Command {
  const cmd = new Command('rotate')
    .description('add a new active signing key; the old one keeps verifying until its tokens expire')
    .addHelpText('after', ROTATION_HELP);
  return withDatabase(cmd).action(async (options: KeysOptions) => {
    const result = await useDatabase(options, (db) =>
      rotateKeys(db, { secretKey: options.secretKey || undefined, now: new Date() }),
    );
    if (!options.secretKey) {
      process.stderr.write(
        'reins: warning: REINS_SECRET_KEY is not set: the new private key is stored unencrypted\n',
      );
    }
    const lines = [`active: ${result.kid}`];
    if (result.retiring.length === 0) lines.push('retiring: none (no key was active before)');
    for (const kid of result.retiring) {
      lines.push(`retiring: ${kid} (published until every token it signed has expired)`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

function keysTable(keys: readonly KeyInfo[]): string {
  const rows = [
    ['KID', 'ALG', 'STATE', 'CREATED', 'ENCRYPTION'],
    ...keys.map((k) => [k.kid, k.alg, k.state, k.createdAt.toISOString(), k.encryption]),
  ];
  return formatTable(rows);
}

function listCommand(): Command {
  const cmd = new Command('list')
    .description('list the signing keys: kid, algorithm, state, creation time (never private material)')
    .addHelpText(
      'after',
      '\nStates: active (signs new tokens), pending and retiring (published in the JWKS, do not sign),\n' +
        'retired (no longer published).\n',
    );
  return withDatabase(cmd).action(async (options: KeysOptions) => {
    const keys = await useDatabase(options, (db) => listKeys(db));
    process.stdout.write(
      keys.length === 0
        ? 'no signing keys yet: `reins serve` creates one at first start, or run `reins keys rotate`\n'
        : `${keysTable(keys)}\n`,
    );
  });
}

export function keysCommand(): Command {
  return new Command('keys')
    .description('manage the keys that sign access tokens (rotate, list)')
    .addHelpText('after', ROTATION_HELP)
    .addCommand(rotateCommand())
    .addCommand(listCommand());
}
