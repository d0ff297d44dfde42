// TLS for gateway tests: a throwaway CA and certificates (made with @peculiar/x509 on WebCrypto),
// an HTTPS echo upstream, and a stand-in interception CA issuing leaves per host.
import { webcrypto } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import * as x509 from '../../src/gateway/ca/x509.ts';
import type { Interceptor } from '../../src/gateway/inspect.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TestCa {
  readonly certPem: string;
  issue(host: string): Promise<{ certPem: string; keyPem: string }>;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

export async function makeCa(name: string): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${name}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 24 * 3600_000),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  let serial = 1;
  return {
    certPem: cert.toString('pem'),
    async issue(host) {
      const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      const isIp = /^[0-9.]+$/.test(host) || host.includes(':');
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: (++serial).toString(16).padStart(2, '0'),
        subject: `CN=${host}`,
        issuer: cert.subject,
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + 24 * 3600_000),
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: isIp ? 'ip' : 'dns', value: host }]),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        ],
      });
      const keyPem = pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey));
      return { certPem: leaf.toString('pem'), keyPem };
    },
  };
}

/** An Interceptor over a test CA, one context per host. */
export function testInterceptor(ca: TestCa): Interceptor {
  const contexts = new Map<string, Promise<SecureContext>>();
  return {
    secureContextFor(host) {
      let context = contexts.get(host);
      if (context === undefined) {
        context = ca
          .issue(host)
          .then(({ certPem, keyPem }) => createSecureContext({ cert: certPem, key: keyPem }));
        contexts.set(host, context);
      }
      return context;
    },
  };
}

export interface HttpsUpstream {
  readonly port: number;
  readonly certPem: string;
  close(): Promise<void>;
}

/** Echoes the request body and says what it saw, over TLS with a certificate for `hosts[0]`. */
export async function startHttpsUpstream(ca: TestCa, host: string): Promise<HttpsUpstream> {
  const { certPem, keyPem } = await ca.issue(host);
  const server: Server = createServer({ cert: certPem, key: keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'x-upstream-method': req.method ?? '',
        'x-upstream-url': req.url ?? '',
        'x-upstream-host': req.headers.host ?? '',
        'x-upstream-proxy-authorization': req.headers['proxy-authorization'] ?? 'none',
      });
      res.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    certPem,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
