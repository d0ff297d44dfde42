// `reins ca export`, `reins ca rotate` and `reins ca list`: the operator's handle on the gateway's
// interception CA (src/gateway/ca). None of them ever prints private key material.
//
// `ca export` reads the database, or with --issuer a running server's GET /ca.pem. Without
// --issuer, when the embedded database cannot be opened (in practice: `reins serve` holds it,
// store/data-dir-lock.ts), it asks the server at REINS_ISSUER (else the default issuer) instead
// and says so in one line on stderr: the bundle is the same either way, and the command the
// README prints works while the server runs.
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { fetchInterceptionCa } from '../agent-run/ca-fetch.ts';
import { AgentRunError } from '../agent-run/errors.ts';
import { pemBlocks } from '../agent-run/pem.ts';
import {
  type CaInfo,
  DEFAULT_CA_OVERLAP_MS,
  exportTrustBundle,
  listInterceptionCas,
  rotateInterceptionCa,
} from '../gateway/ca/authority.ts';
import { type Db, StoreError } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { openDb } from '../store/open.ts';
import { addDatabaseOptions, type DatabaseOptions } from './database-options.ts';
import { CliError, ContextError, EXIT, isExplained } from './failure.ts';
import { DEFAULT_ISSUER } from './run.ts';
import { formatTable } from './table.ts';

interface CaOptions extends DatabaseOptions {
  secretKey?: string | undefined;
}

const DAY_MS = 24 * 60 * 60_000;
const DEFAULT_OVERLAP_DAYS = DEFAULT_CA_OVERLAP_MS / DAY_MS;

const CA_HELP =
  '\nThe gateway terminates TLS for inspected tunnels with leaf certificates signed by its\n' +
  'interception CA, created at first start and kept in the database. Agents must trust it:\n' +
  '`reins run` and `reins env` fetch it from the issuer (GET /ca.pem); elsewhere\n' +
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

// The CA lives in the migrated schema; like `serve`, apply pending migrations first (safe from
// several processes at once), so the commands also work on a database no gateway has touched yet.
// `unopened` answers instead when the embedded database cannot be opened (ca export only).
async function useDatabase<T>(
  options: DatabaseOptions,
  work: (db: Db) => Promise<T>,
  unopened?: (err: StoreError) => Promise<T>,
): Promise<T> {
  let db: Db;
  try {
    db = await openDb({ databaseUrl: options.databaseUrl, dataDir: options.dataDir });
  } catch (err) {
    const embedded = !options.databaseUrl && options.dataDir !== 'memory';
    if (unopened && embedded && err instanceof StoreError && err.code === 'database_unavailable') {
      return unopened(err);
    }
    throw err;
  }
  try {
    await migrate(db);
    return await work(db);
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

/** What `ca export` writes, from either source. */
interface Exported {
  readonly pem: string;
  /** One entry per certificate, for the --out summary: `<id> (<state>)`, or `<id>` from a server. */
  readonly names: readonly string[];
  /** Where it came from, when not the database. */
  readonly from?: string;
}

/** The bundle from a running server's /ca.pem; any failure is one line, exit 3 (1: a wrong answer). */
async function exportFromIssuer(issuer: string): Promise<Exported> {
  if (!URL.canParse(issuer)) throw new CliError(`--issuer ${issuer} is not a URL`, EXIT.usage);
  try {
    const fetched = await fetchInterceptionCa(issuer);
    const names = pemBlocks(fetched.pem).map(caName);
    return { pem: fetched.pem, names, from: fetched.url };
  } catch (err) {
    if (!(err instanceof AgentRunError)) throw err;
    throw new ContextError(err, 'cannot fetch the interception CA');
  }
}

/** The id reins puts in its CAs' subject, else the certificate's fingerprint. */
function caName(pem: string): string {
  const certificate = new X509Certificate(pem);
  return /CN=reins interception CA ([0-9a-f]+)/.exec(certificate.subject)?.[1] ?? certificate.fingerprint256;
}

function exportCommand(): Command {
  const cmd = new Command('export')
    .description('print the CA certificates agents should trust (PEM, newest first)')
    .option('--out <file>', 'write the bundle to FILE instead of standard output')
    .option(
      '--issuer <url>',
      "read it from a running server's GET <issuer>/ca.pem instead of the database (works while `reins serve` holds the embedded database)",
    )
    .addHelpText('after', CA_HELP);
  return addDatabaseOptions(cmd).action(
    async (options: DatabaseOptions & { out?: string; issuer?: string }) => {
      const bundle =
        options.issuer !== undefined
          ? await exportFromIssuer(options.issuer)
          : await useDatabase<Exported>(
              options,
              async (db) => {
                const exported = await exportTrustBundle(db, new Date());
                return { pem: exported.pem, names: exported.cas.map((ca) => `${ca.id} (${ca.state})`) };
              },
              (err) => exportFromRunningServer(err),
            );
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
      const count = bundle.names.length;
      const from = bundle.from === undefined ? '' : ` (from ${bundle.from})`;
      process.stdout.write(
        `wrote ${count} CA certificate${count === 1 ? '' : 's'} to ${options.out}${from}: ${bundle.names.join(', ')}\n`,
      );
    },
  );
}

/**
 * The embedded database is held (a running `reins serve`) or unreadable: ask the server at
 * REINS_ISSUER, else the default issuer, and say so. When that fails too, both reasons are given.
 */
async function exportFromRunningServer(unopened: StoreError): Promise<Exported> {
  const issuer = process.env.REINS_ISSUER || DEFAULT_ISSUER;
  try {
    const exported = await exportFromIssuer(issuer);
    // The store's reason up to its advice, e.g. "the embedded database at … is in use by process 4242".
    const why = unopened.message.split(': ')[0];
    process.stderr.write(`reins: ${why}: read the CA from ${exported.from} instead\n`);
    return exported;
  } catch (err) {
    if (!(err instanceof Error) || !isExplained(err)) throw err;
    // Both reasons, and 3 whatever the second one was: the database is what was asked for.
    throw new CliError(
      `${unopened.message}; asking the server at ${issuer} instead failed: ${err.message} (pass --issuer URL)`,
      EXIT.unavailable,
    );
  }
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
    lines.push(
      'next: give agents the new bundle (reins run and reins env fetch it from the issuer, GET /ca.pem, ' +
        'within 10 s; others: `reins ca export`), then restart the gateways',
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

const time = (value: Date | null) => (value === null ? '-' : value.toISOString());

function casTable(cas: readonly CaInfo[]): string {
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
  return formatTable(rows);
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
        : `${casTable(cas)}\n`,
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
