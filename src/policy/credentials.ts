// Checks on how clients and issuers prove themselves: public keys must be public and usable,
// key URLs must be https, secret hashes must be in the one format the server verifies.
// A private key pasted into a policy file is an error (and the key should be treated as leaked).
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { describe } from './describe.ts';
import { type Diagnostic, error, warning } from './diagnostic.ts';
import type { NodePath } from './document.ts';
import { parseSecretHash, verifySecret } from './secret-hash.ts';
import type { AuthData, IssuerData, JwksData } from './shape.ts';
import type { Located } from './tenants.ts';

/** JWK members that only private (or symmetric) keys have (RFC 7518 §6). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

export function checkClientAuth(client: Located<{ auth: AuthData }>, out: Diagnostic[]): void {
  const path = [...client.path, 'auth'];
  const { auth } = client.value;
  if (auth.jwks) checkJwks(client, [...path, 'jwks'], auth.jwks, out);
  if (auth.jwks_uri !== undefined) checkKeyUrl(client, [...path, 'jwks_uri'], auth.jwks_uri, out);
  if (auth.secret_hash !== undefined) {
    const parsed = parseSecretHash(auth.secret_hash);
    if (!parsed.ok) out.push(error(client.file.locate([...path, 'secret_hash']), parsed.message));
  }
  if (auth.example_secret !== undefined) checkExampleSecret(client, path, auth, out);
}

/**
 * `example_secret` publishes a secret on purpose (the shipped examples, so that the commands
 * `reins serve` prints work as pasted). The server still verifies the hash; the plaintext must
 * match it, and every validation says that anyone can use this client.
 */
function checkExampleSecret(
  client: Located<{ auth: AuthData }>,
  path: NodePath,
  auth: AuthData,
  out: Diagnostic[],
): void {
  const at = client.file.locate([...path, 'example_secret']);
  if (auth.secret_hash === undefined) {
    out.push(
      error(
        at,
        'example_secret needs the secret_hash it is the plaintext of (`reins policy hash-secret` makes one); a real client has no example_secret at all',
      ),
    );
    return;
  }
  if (parseSecretHash(auth.secret_hash).ok && !verifySecret(auth.example_secret ?? '', auth.secret_hash)) {
    out.push(
      error(at, 'example_secret does not match secret_hash: hash it again with `reins policy hash-secret`'),
    );
    return;
  }
  out.push(
    warning(
      at,
      `${describe(client.path)} publishes its secret (example_secret): anyone who reads this file can obtain this client's tokens. ` +
        'Fine for the examples; before real use remove example_secret and set a secret_hash or secret_env of your own',
    ),
  );
}

export function checkIssuer(issuer: Located<IssuerData>, out: Diagnostic[]): void {
  const { value, file, path } = issuer;
  if (!URL.canParse(value.issuer)) {
    out.push(
      error(
        file.locate([...path, 'issuer']),
        `issuer '${value.issuer}' is not a URL; write it exactly as the iss claim of its tokens`,
      ),
    );
  }
  if (value.jwks) checkJwks(issuer, [...path, 'jwks'], value.jwks, out);
  if (value.jwks_uri !== undefined) checkKeyUrl(issuer, [...path, 'jwks_uri'], value.jwks_uri, out);
}

function checkKeyUrl(owner: Located<unknown>, path: NodePath, text: string, out: Diagnostic[]): void {
  const url = URL.canParse(text) ? new URL(text) : null;
  if (!url) {
    out.push(
      error(
        owner.file.locate(path),
        `${describe(path)} '${text}' is not a URL; write e.g. https://login.example.com/jwks`,
      ),
    );
    return;
  }
  // Keys fetched over plain http could be swapped by anyone on the path; only a loopback
  // development server is exempt.
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !loopback) {
    out.push(
      error(
        owner.file.locate(path),
        `${describe(path)} must use https (keys fetched over http can be replaced in transit)`,
      ),
    );
  }
}

function checkJwks(owner: Located<unknown>, path: NodePath, jwks: JwksData, out: Diagnostic[]): void {
  const kids = new Set<string>();
  jwks.keys.forEach((jwk, i) => {
    const keyPath = [...path, 'keys', i];
    const at = owner.file.locate(keyPath);
    const secretParts = PRIVATE_MEMBERS.filter((member) => member in jwk);
    if (secretParts.length > 0) {
      out.push(
        error(
          owner.file.locateKey([...keyPath, secretParts[0] ?? '']),
          `${describe(keyPath)} has private key material (${secretParts.join(', ')}): a policy file holds ` +
            'public keys only; remove those members, and replace the key since it has been exposed',
        ),
      );
      return;
    }
    if (jwk.kid !== undefined) {
      if (kids.has(jwk.kid))
        out.push(
          error(at, `${describe(keyPath)}: kid '${jwk.kid}' appears twice; give each key its own kid`),
        );
      kids.add(jwk.kid);
    }
    try {
      createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      out.push(
        error(
          at,
          `${describe(keyPath)} is not a usable ${jwk.kty} public key (${reason}); check kty, crv and the coordinates`,
        ),
      );
    }
  });
}
