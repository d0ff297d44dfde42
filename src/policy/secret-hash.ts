// Client secrets are referenced from policy files, never written in them: either by the name of
// an environment variable or by a hash. The hash is scrypt (RFC 7914), a memory-hard function,
// so a leaked policy repository does not hand out secrets even when one is weak. It is written
// in the PHC string format, as used by passlib and argon2 tools:
//
//   $scrypt$ln=<log2 N>,r=<block size>,p=<parallelism>$<salt>$<hash>
//
// salt and hash in base64 without padding. Parameters are bounded so that one verification
// costs at most MAX_MEMORY: a hostile policy must not make every token request allocate gigabytes.
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';

export interface ScryptHash {
  /** log2 of the CPU/memory cost N. */
  readonly ln: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

export type SecretHashResult = { ok: true; hash: ScryptHash } | { ok: false; message: string };

/** Defaults: N = 2^15, r = 8, p = 1 (32 MiB, tens of milliseconds), 16-byte salt, 32-byte hash. */
export const SCRYPT_DEFAULTS = { ln: 15, r: 8, p: 1, saltBytes: 16, hashBytes: 32 } as const;
const MAX_MEMORY = 256 * 1024 * 1024;
const FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export const SECRET_HASH_EXAMPLE = '$scrypt$ln=15,r=8,p=1$<salt>$<hash>';

export function parseSecretHash(text: string): SecretHashResult {
  const m = FORMAT.exec(text);
  if (!m) {
    return {
      ok: false,
      message: `secret_hash must be in the form ${SECRET_HASH_EXAMPLE} (base64, no padding); make one with \`reins policy hash-secret\``,
    };
  }
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const salt = Buffer.from(m[4] ?? '', 'base64');
  const hash = Buffer.from(m[5] ?? '', 'base64');
  if (ln < 14 || ln > 20)
    return { ok: false, message: `secret_hash: ln must be between 14 and 20, not ${ln}` };
  if (r < 1 || r > 32 || p < 1 || p > 16) {
    return { ok: false, message: 'secret_hash: r must be between 1 and 32 and p between 1 and 16' };
  }
  if (memoryFor(ln, r) > MAX_MEMORY) {
    return { ok: false, message: 'secret_hash: ln and r ask for more than 256 MiB per check; lower them' };
  }
  if (salt.length < 16) return { ok: false, message: 'secret_hash: the salt must be at least 16 bytes' };
  if (hash.length < 32) return { ok: false, message: 'secret_hash: the hash must be at least 32 bytes' };
  return { ok: true, hash: { ln, r, p, salt, hash } };
}

export function hashSecret(secret: string, salt: Buffer = randomBytes(SCRYPT_DEFAULTS.saltBytes)): string {
  const { ln, r, p, hashBytes } = SCRYPT_DEFAULTS;
  const hash = derive(secret, { ln, r, p, salt }, hashBytes);
  return `$scrypt$ln=${ln},r=${r},p=${p}$${b64(salt)}$${b64(hash)}`;
}

/** Constant-time comparison of a presented secret against a stored hash. */
export function verifySecret(secret: string, encoded: string): boolean {
  const parsed = parseSecretHash(encoded);
  if (!parsed.ok) return false;
  const candidate = derive(secret, parsed.hash, parsed.hash.hash.length);
  return timingSafeEqual(candidate, parsed.hash.hash);
}

function derive(secret: string, params: Omit<ScryptHash, 'hash'>, length: number): Buffer {
  return scryptSync(secret, params.salt, length, {
    N: 2 ** params.ln,
    r: params.r,
    p: params.p,
    maxmem: memoryFor(params.ln, params.r) * 2,
  });
}

function memoryFor(ln: number, r: number): number {
  return 128 * 2 ** ln * r;
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}
