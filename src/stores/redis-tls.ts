/**
 * TLS settings of the Redis connections: a CA bundle for servers whose certificate a private CA
 * signed (managed services often do), and a client certificate and key for servers that require
 * mutual TLS. Without a CA bundle Node's default roots are trusted (plus NODE_EXTRA_CA_CERTS).
 *
 * The paths were checked readable when the options were read (config.ts); they are read here once,
 * at start, so a certificate rotated on disk takes effect on the next start.
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";

export interface RedisTlsFiles {
  /** PEM bundle of the CAs to trust instead of the default roots (--redis-tls-ca). Default: none. */
  readonly caFile?: string;
  /** PEM client certificate for mutual TLS (--redis-tls-cert). Default: none. */
  readonly certFile?: string;
  /** PEM private key of the client certificate (--redis-tls-key). Default: none. */
  readonly keyFile?: string;
}

/** The node:tls options for these files ({} when none: TLS with the default roots). */
export function tlsOptions(files: RedisTlsFiles | undefined): ConnectionOptions {
  const options: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  if (files?.caFile !== undefined) options.ca = readFileSync(files.caFile);
  if (files?.certFile !== undefined) options.cert = readFileSync(files.certFile);
  if (files?.keyFile !== undefined) options.key = readFileSync(files.keyFile);
  return options;
}
