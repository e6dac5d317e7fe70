/**
 * A throw-away private PKI for TLS tests, made with the openssl command line: a CA, a server
 * certificate for 127.0.0.1/localhost signed by it, a client certificate (mutual TLS), a server
 * certificate that names another host only (hostname mismatch), and a second CA nobody trusts.
 * EC keys, so the whole set takes well under a second.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "./binaries.ts";

export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

export interface TestPki {
  readonly dir: string;
  /** The CA that signed server, client and wrongHost. */
  readonly ca: string;
  /** SAN IP:127.0.0.1, DNS:localhost. */
  readonly server: CertPair;
  /** A client certificate for mutual TLS. */
  readonly client: CertPair;
  /** SAN DNS:redis.example.test only: connecting to 127.0.0.1 is a hostname mismatch. */
  readonly wrongHost: CertPair;
  /** A CA that signed nothing here: trusting it alone leaves the server untrusted. */
  readonly otherCa: string;
  remove(): void;
}

function openssl(...args: string[]): void {
  const result = Bun.spawnSync([requireBinary("openssl"), ...args], { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${result.stderr.toString()}`);
}

function makeCa(dir: string, name: string): CertPair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pair.key);
  openssl("req", "-x509", "-new", "-key", pair.key, "-out", pair.cert, "-days", "2", "-subj", `/CN=Turnomatic test ${name}`);
  return pair;
}

function makeLeaf(dir: string, name: string, ca: CertPair, extensions: string): CertPair {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `${extensions}\n`);
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pair.key);
  openssl("req", "-new", "-key", pair.key, "-out", csr, "-subj", `/CN=${name}`);
  openssl(
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    pair.cert,
    "-days",
    "2",
    "-extfile",
    ext,
  );
  return pair;
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-pki-"));
  const ca = makeCa(dir, "ca");
  const other = makeCa(dir, "other-ca");
  return {
    dir,
    ca: ca.cert,
    server: makeLeaf(dir, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost"),
    client: makeLeaf(dir, "client", ca, "extendedKeyUsage=clientAuth"),
    wrongHost: makeLeaf(dir, "wrong-host", ca, "subjectAltName=DNS:redis.example.test"),
    otherCa: other.cert,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** TLS settings of a test redis-server (see startRedis's `tls`). */
export interface RedisTlsSetup {
  readonly pki: TestPki;
  /** The server's certificate; default pki.server. */
  readonly serverCert?: CertPair;
  /** tls-auth-clients: "yes" requires a client certificate. Default "no". */
  readonly authClients?: "yes" | "no" | "optional";
}

/** redis-server arguments for TLS only (`--port 0`), on `port`. */
export function redisTlsArgs(setup: RedisTlsSetup, port: number): string[] {
  const cert = setup.serverCert ?? setup.pki.server;
  return [
    "--port",
    "0",
    "--tls-port",
    String(port),
    "--tls-cert-file",
    cert.cert,
    "--tls-key-file",
    cert.key,
    "--tls-ca-cert-file",
    setup.pki.ca,
    "--tls-auth-clients",
    setup.authClients ?? "no",
    "--tls-replication",
    "yes",
  ];
}

/** redis-cli arguments to reach a TLS server of this PKI (with the client certificate). */
export function redisCliTlsArgs(pki: TestPki): string[] {
  return ["--tls", "--cacert", pki.ca, "--cert", pki.client.cert, "--key", pki.client.key];
}
