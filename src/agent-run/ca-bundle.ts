// The interception CA for the command's TLS clients. SSL_CERT_FILE, REQUESTS_CA_BUNDLE and
// CURL_CA_BUNDLE replace a tool's roots instead of adding to them (environment.ts), so they get
// a bundle: the roots Node ships (tls.rootCertificates, Mozilla's list), whatever bundles the
// caller's environment already named (an internal CA behind a whole-origin tunnel must stay
// trusted), and the reins CA. NODE_EXTRA_CA_CERTS adds to Node's roots; it names the CA, or
// the CA together with the caller's own extra certificates.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { rootCertificates } from 'node:tls';
import { BUNDLE_VARIABLES, type CaFiles } from './environment.ts';
import { AgentRunError } from './errors.ts';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

type Env = Readonly<Record<string, string | undefined>>;

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
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      throw new AgentRunError('ca_invalid', `the CA ${file} holds a certificate that cannot be read`);
    }
  }
  if (blocks.length === 0) {
    throw new AgentRunError(
      'ca_invalid',
      `the CA ${file} holds no PEM certificate (reins ca export prints one)`,
    );
  }
  return { path, pem: `${blocks.join('\n')}\n` };
}

/** Node's roots, the bundles `env` names, then the CA, as one PEM bundle. */
export async function bundleText(caPem: string, env: Env): Promise<string> {
  const named = [
    ...new Set(BUNDLE_VARIABLES.map((name) => env[name]).filter((v) => v !== undefined && v !== '')),
  ];
  const existing = await Promise.all(named.map((file) => certificatesIn(String(file))));
  return [...rootCertificates, ...existing.flat(), caPem.trim()].join('\n').concat('\n');
}

/** Writes the bundle to `file` (for `reins env --bundle`); returns its absolute path. */
export async function writeBundle(file: string, caPem: string, env: Env): Promise<string> {
  const path = resolve(file);
  await writeFile(path, await bundleText(caPem, env), { mode: 0o644 });
  return path;
}

/** The CA files for `reins run`, in a private temporary directory that `remove()` deletes. */
export async function temporaryCaFiles(
  file: string,
  env: Env,
): Promise<CaFiles & { remove(): Promise<void> }> {
  const ca = await readCa(file);
  const dir = await mkdtemp(join(tmpdir(), 'reins-run-'));
  try {
    const bundle = join(dir, 'ca-bundle.pem');
    await writeFile(bundle, await bundleText(ca.pem, env), { mode: 0o600 });
    let certificate = ca.path;
    const callerExtra = env.NODE_EXTRA_CA_CERTS;
    if (callerExtra !== undefined && callerExtra !== '') {
      certificate = join(dir, 'extra-ca-certs.pem');
      const theirs = await certificatesIn(callerExtra);
      await writeFile(certificate, [...theirs, ca.pem.trim()].join('\n').concat('\n'), { mode: 0o600 });
    }
    return { certificate, bundle, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The certificates of a bundle the caller named; none when it cannot be read. */
async function certificatesIn(file: string): Promise<string[]> {
  try {
    return (await readFile(file, 'utf8')).match(PEM_CERTIFICATE) ?? [];
  } catch {
    return [];
  }
}
