// The interception CA for the command's TLS clients. SSL_CERT_FILE, REQUESTS_CA_BUNDLE and
// CURL_CA_BUNDLE replace a tool's roots instead of adding to them (environment.ts), so they get
// a bundle: the roots Node ships (tls.rootCertificates, Mozilla's list), whatever bundles the
// caller's environment already named (an internal CA behind a whole-origin tunnel must stay
// trusted), and the reins CA. NODE_EXTRA_CA_CERTS adds to Node's roots; it names the CA, or
// the CA together with the caller's own extra certificates.
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { rootCertificates } from 'node:tls';
import { BUNDLE_VARIABLES, type CaFiles } from './environment.ts';
import { AgentRunError } from './errors.ts';
import { certificatesIn, pemBlocks } from './pem.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** The interception CA as the commands hold it: its PEM, and the file it came from, if any. */
export interface CaSource {
  /** Absolute path of the --ca file; absent for a CA fetched from the issuer. */
  readonly path?: string | undefined;
  readonly pem: string;
}

/** The PEM certificates in `file` (absolute path and text); fails when there is none. */
export async function readCa(file: string): Promise<{ readonly path: string; readonly pem: string }> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new AgentRunError('ca_unreadable', `cannot read the CA ${file}: ${String(code ?? err)}`);
  }
  const certificates = certificatesIn(text, file);
  return { path, pem: `${certificates.map((c) => c.pem).join('\n')}\n` };
}

/** Node's roots, the bundles `env` names, then the CA, as one PEM bundle. */
export async function bundleText(caPem: string, env: Env): Promise<string> {
  const named = [
    ...new Set(BUNDLE_VARIABLES.map((name) => env[name]).filter((v) => v !== undefined && v !== '')),
  ];
  const existing = await Promise.all(named.map((file) => callerCertificates(String(file))));
  return [...rootCertificates, ...existing.flat(), caPem.trim()].join('\n').concat('\n');
}

/** Writes the bundle to `file` (for `reins env --bundle`); returns its absolute path. */
export async function writeBundle(file: string, caPem: string, env: Env): Promise<string> {
  const path = resolve(file);
  await writeFile(path, await bundleText(caPem, env), { mode: 0o644 });
  return path;
}

/**
 * The CA files for `reins run`, in a private temporary directory that `remove()` deletes: the
 * bundle, and the CA itself when it has no file of its own (fetched from the issuer).
 */
export async function temporaryCaFiles(
  ca: CaSource,
  env: Env,
): Promise<CaFiles & { remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'reins-run-'));
  try {
    const bundle = join(dir, 'ca-bundle.pem');
    await writeFile(bundle, await bundleText(ca.pem, env), { mode: 0o600 });
    let certificate = ca.path ?? join(dir, 'interception-ca.pem');
    if (ca.path === undefined) await writeFile(certificate, ca.pem, { mode: 0o600 });
    const callerExtra = env.NODE_EXTRA_CA_CERTS;
    if (callerExtra !== undefined && callerExtra !== '') {
      certificate = join(dir, 'extra-ca-certs.pem');
      const theirs = await callerCertificates(callerExtra);
      await writeFile(certificate, [...theirs, ca.pem.trim()].join('\n').concat('\n'), { mode: 0o600 });
    }
    return { certificate, bundle, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Where `reins env` keeps a CA it fetched from `issuer`, for the variables it prints to name:
 * `$XDG_CACHE_HOME/reins/` (else `~/.cache/reins/`), one file per issuer origin, replaced whole
 * (written beside and renamed) so a reader never sees half of it. Certificates only: 0644.
 */
export async function saveFetchedCa(issuer: string, pem: string, env: Env): Promise<string> {
  const cache = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  const dir = join(cache, 'reins');
  const name = new URL(issuer).host.replace(/[^A-Za-z0-9.-]/g, '_');
  const file = join(dir, `interception-ca-${name}.pem`);
  try {
    await mkdir(dir, { recursive: true });
    const partial = `${file}.${process.pid}.tmp`;
    await writeFile(partial, pem, { mode: 0o644 });
    await rename(partial, file);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new AgentRunError(
      'ca_unavailable',
      `cannot keep the interception CA in ${dir}: ${String(code ?? err)}; give --ca FILE (reins ca export --issuer URL --out FILE writes one)`,
    );
  }
  return file;
}

/** The certificates of a bundle the caller named; none when it cannot be read. */
async function callerCertificates(file: string): Promise<string[]> {
  try {
    return pemBlocks(await readFile(file, 'utf8'));
  } catch {
    return [];
  }
}
