import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeTempDir } from './process.js';

/** PEM files of a throwaway PKI made with openssl (all in `dir`). */
export interface TestPki {
  readonly dir: string;
  /** The CA that signed the server and client certificates. */
  readonly caCert: string;
  /** Another CA that signed nothing here: "wrong CA". */
  readonly otherCaCert: string;
  /** Server certificate (SAN IP:127.0.0.1, DNS:localhost) and its unencrypted PKCS#8 key. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** Server key followed by its certificate: a Kafka `ssl.keystore.type=PEM` keystore. */
  readonly serverKeystore: string;
  /** Client certificate (CN=bridge) with its key encrypted under `clientKeyPassphrase`. */
  readonly clientCert: string;
  readonly clientKey: string;
  readonly clientKeyPassphrase: string;
  /** The same client key, unencrypted. */
  readonly clientKeyPlain: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Creates a CA, a server certificate valid for 127.0.0.1 and localhost, a client certificate,
 * and a second unrelated CA, with the openssl command line tool. RSA 2048: every party here
 * (Node, mosquitto/OpenSSL, Kafka's PEM keystore, librdkafka) reads it.
 */
export function makeTestPki(dir = makeTempDir('pki-'), clientKeyPassphrase = 'client-key-pass'): TestPki {
  fs.mkdirSync(dir, { recursive: true });
  const f = (name: string) => path.join(dir, name);
  const key = (name: string) => openssl(dir, ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', name]);
  const ca = (name: string, cn: string) => {
    key(`${name}.key`);
    openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '2', '-subj', `/CN=${cn}`, '-out', `${name}.crt`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  };
  const leaf = (name: string, cn: string, ext: string) => {
    key(`${name}.key`);
    openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
    fs.writeFileSync(f(`${name}.ext`), ext);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-sha256', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
  };
  ca('ca', 'mqks test CA');
  ca('other-ca', 'mqks unrelated CA');
  leaf('server', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'bridge', 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  openssl(dir, ['pkcs8', '-topk8', '-in', 'client.key', '-v2', 'aes-256-cbc', '-passout', `pass:${clientKeyPassphrase}`, '-out', 'client-encrypted.key']);
  fs.writeFileSync(f('server-keystore.pem'), fs.readFileSync(f('server.key'), 'utf8') + fs.readFileSync(f('server.crt'), 'utf8'));
  return {
    dir,
    caCert: f('ca.crt'),
    otherCaCert: f('other-ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    serverKeystore: f('server-keystore.pem'),
    clientCert: f('client.crt'),
    clientKey: f('client-encrypted.key'),
    clientKeyPassphrase,
    clientKeyPlain: f('client.key'),
  };
}
