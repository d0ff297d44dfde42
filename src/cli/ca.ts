// `reins ca export`, `reins ca rotate` and `reins ca list`: the operator's handle on the gateway's
// interception CA (src/gateway/ca). None of them ever prints private key material.
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import {
  type CaInfo,
  DEFAULT_CA_OVERLAP_MS,
  exportTrustBundle,
  listInterceptionCas,
  rotateInterceptionCa,
} from '../gateway/ca/authority.ts';
import { InterceptionCaError, type InterceptionCaErrorCode } from '../gateway/ca/errors.ts';
import { KeyEncryptionError, type KeyEncryptionErrorCode } from '../server/keys/encryption.ts';
import type { Db } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import {
  addDatabaseOptions,
  type DatabaseOptions,
  openDatabaseFromOptions,
  toCliError,
} from './database-options.ts';
import { CliError, EXIT, type ExitCode } from './failure.ts';

interface CaOptions extends DatabaseOptions {
  secretKey?: string | undefined;
}

const DAY_MS = 24 * 60 * 60_000;
const DEFAULT_OVERLAP_DAYS = DEFAULT_CA_OVERLAP_MS / DAY_MS;

const CA_HELP =
  '\nThe gateway terminates TLS for inspected tunnels with leaf certificates signed by its\n' +
  'interception CA, created at first start and kept in the database. Agents must trust it:\n' +
  '`reins ca export > reins-ca.pem`, then NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, REQUESTS_CA_BUNDLE\n' +
  'or curl --cacert.\n' +
  '\nRotation: `reins ca rotate` adds a new CA that signs every leaf from then on (a gateway\n' +
  'switches when it restarts). The CA it replaces stops signing, its private key is erased,\n' +
  `and it stays in the exported bundle for ${DEFAULT_OVERLAP_DAYS} days (--overlap-days), never past its own expiry.\n` +
  '\nPrivate keys are encrypted at rest with REINS_SECRET_KEY when it is set (give the same secret\n' +
  'as the gateways; prefer the environment variable to --secret-key, which other users of the\n' +
  'machine can see in the process list). Without it they are stored unencrypted.\n' +
  '\nExit codes: 0 done, 1 the stored CA cannot be read with the secret given (missing, wrong,\n' +
  'or a damaged row) or has expired, 3 the database is unavailable or there is no CA yet.\n';

const KEY_EXIT: Record<KeyEncryptionErrorCode, ExitCode> = {
  secret_key_missing: EXIT.invalid,
  secret_key_mismatch: EXIT.invalid,
  private_key_corrupt: EXIT.invalid,
  encryption_scheme_unknown: EXIT.invalid,
};

const CA_EXIT: Record<InterceptionCaErrorCode, ExitCode> = {
  ca_missing: EXIT.unavailable,
  ca_expired: EXIT.invalid,
  ca_key_mismatch: EXIT.invalid,
  // No command here issues leaves.
  invalid_host: EXIT.internal,
};

function toCaCliError(err: unknown): unknown {
  if (err instanceof KeyEncryptionError) return new CliError(err.message, KEY_EXIT[err.code]);
  if (err instanceof InterceptionCaError) return new CliError(err.message, CA_EXIT[err.code]);
  return toCliError(err);
}

// The CA lives in the migrated schema; like `serve`, apply pending migrations first (safe from
// several processes at once), so the commands also work on a database no gateway has touched yet.
async function useDatabase<T>(options: DatabaseOptions, work: (db: Db) => Promise<T>): Promise<T> {
  const db = await openDatabaseFromOptions(options);
  try {
    await migrate(db);
    return await work(db);
  } catch (err) {
    throw toCaCliError(err);
  } finally {
    await db.close();
  }
}

function overlapDays(text: string): number {
  if (!/^\d{1,4}$/.test(text)) {
    throw new CliError(
      `--overlap-days ${JSON.stringify(text)}: give a whole number of days, 0 or more`,
      EXIT.usage,
    );
  }
  return Number(text);
}

function exportCommand(): Command {
  const cmd = new Command('export')
    .description('print the CA certificates agents should trust (PEM, newest first)')
    .option('--out <file>', 'write the bundle to FILE instead of standard output')
    .addHelpText('after', CA_HELP);
  return addDatabaseOptions(cmd).action(async (options: DatabaseOptions & { out?: string }) => {
    const bundle = await useDatabase(options, (db) => exportTrustBundle(db, new Date()));
    if (options.out === undefined) {
      process.stdout.write(bundle.pem);
      return;
    }
    try {
      // Certificates only: nothing secret, readable by the agents' users.
      await writeFile(options.out, bundle.pem, { mode: 0o644 });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new CliError(`cannot write ${options.out}: ${reason}`, EXIT.unavailable);
    }
    const ids = bundle.cas.map((ca) => `${ca.id} (${ca.state})`).join(', ');
    process.stdout.write(
      `wrote ${bundle.cas.length} CA certificate${bundle.cas.length === 1 ? '' : 's'} to ${options.out}: ${ids}\n`,
    );
  });
}

function rotateCommand(): Command {
  const cmd = new Command('rotate')
    .description('add a new interception CA; the old one stays in the exported bundle for the overlap')
    .addOption(
      new Option('--overlap-days <days>', 'how long the replaced CA stays in the bundle (0: drop it now)')
        .default(DEFAULT_OVERLAP_DAYS)
        .argParser(overlapDays),
    )
    .addOption(
      new Option('--secret-key <secret>', 'secret that encrypts private keys at rest').env(
        'REINS_SECRET_KEY',
      ),
    )
    .addHelpText('after', CA_HELP);
  return addDatabaseOptions(cmd).action(async (options: CaOptions & { overlapDays: number }) => {
    const result = await useDatabase(options, (db) =>
      rotateInterceptionCa(db, {
        secretKey: options.secretKey || undefined,
        now: new Date(),
        overlapMs: options.overlapDays * DAY_MS,
      }),
    );
    if (!options.secretKey) {
      process.stderr.write(
        'reins: warning: REINS_SECRET_KEY is not set: the new CA private key is stored unencrypted\n',
      );
    }
    const lines = [
      `active: ${result.id} (signs new leaf certificates; expires ${result.notAfter.toISOString()})`,
    ];
    lines.push(
      result.replaced === null
        ? 'replaced: none (no CA existed before)'
        : `replaced: ${result.replaced.id} (private key erased; in the bundle until ${result.replaced.trustedUntil.toISOString()})`,
    );
    lines.push('next: give agents the new bundle (`reins ca export`), then restart the gateways');
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

const time = (value: Date | null) => (value === null ? '-' : value.toISOString());

function formatTable(cas: readonly CaInfo[]): string {
  const rows = [
    ['ID', 'STATE', 'CREATED', 'NOT_AFTER', 'TRUSTED_UNTIL', 'ENCRYPTION', 'SHA256_FINGERPRINT'],
    ...cas.map((ca) => [
      ca.id,
      ca.state,
      time(ca.createdAt),
      time(ca.notAfter),
      time(ca.trustedUntil),
      ca.encryption,
      ca.fingerprint256,
    ]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function listCommand(): Command {
  const cmd = new Command('list')
    .description('list the interception CAs: id, state, validity, fingerprint (never private material)')
    .addHelpText(
      'after',
      '\nStates: active (signs new leaves; in the bundle), trusted (replaced, still in the bundle until\n' +
        'TRUSTED_UNTIL), retired (out of the bundle), expired (past NOT_AFTER).\n',
    );
  return addDatabaseOptions(cmd).action(async (options: DatabaseOptions) => {
    const cas = await useDatabase(options, (db) => listInterceptionCas(db, new Date()));
    process.stdout.write(
      cas.length === 0
        ? 'no interception CA yet: the gateway creates one at first start, or run `reins ca rotate`\n'
        : `${formatTable(cas)}\n`,
    );
  });
}

export function caCommand(): Command {
  return new Command('ca')
    .description("manage the gateway's interception CA (export, rotate, list)")
    .addHelpText('after', CA_HELP)
    .addCommand(exportCommand())
    .addCommand(rotateCommand())
    .addCommand(listCommand());
}
