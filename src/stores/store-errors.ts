/**
 * Names the cause of a Redis failure in the service's own words, for the logs, /readyz and the 503's
 * detail. ioredis reports a lost connection to the command that was waiting as "Reached the max
 * retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details." and
 * the real cause (an untrusted certificate, a refused password) only as an "error" event on the
 * client (issue 18): so the connection's last cause is kept (connection-events.ts) and a command that
 * failed for want of a connection is answered with it.
 *
 * Codes: Node's TLS verification codes (OpenSSL's X509_V_ERR_* names, which Bun uses too),
 * ERR_TLS_CERT_ALTNAME_INVALID, the errno names of net, and the Redis error prefixes WRONGPASS,
 * NOAUTH, NOPERM, LOADING. Every message reads as a clause: no trailing period, since
 * StoreUnavailableError appends ". Retry later.".
 */

export type StoreCauseKind =
  | "tls-untrusted"
  | "tls-expired"
  | "tls-hostname"
  | "tls-client-certificate"
  | "tls-mismatch"
  | "auth"
  | "acl"
  | "refused"
  | "timeout"
  | "dns"
  | "reset"
  | "loading"
  | "not-connected";

export interface StoreCause {
  readonly kind: StoreCauseKind;
  /** What happened and what to do, in the service's words (no trailing period). */
  readonly message: string;
}

/** Verification failures that mean "the CA that signed this certificate is not trusted". */
const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_CHAIN_TOO_LONG",
  "INVALID_CA",
]);

const EXPIRED = new Set(["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]);

/** ioredis's messages for a command that never got a connection to run on. */
const NOT_CONNECTED = [
  "Reached the max retries per request limit",
  "Connection is closed",
  "Stream isn't writeable",
  "Failed to refresh slots cache",
  "None of startup nodes is available",
  "All sentinels are unreachable",
];

interface ErrorLike {
  readonly message: string;
  readonly code?: unknown;
  readonly address?: unknown;
  readonly port?: unknown;
  readonly lastNodeError?: unknown;
}

function asErrorLike(error: unknown): ErrorLike | undefined {
  if (typeof error !== "object" || error === null || typeof (error as ErrorLike).message !== "string") return undefined;
  return error as ErrorLike;
}

/** "at 10.0.0.1:6379" when the error names the address (net errors do). */
function at(error: ErrorLike): string {
  if (typeof error.address !== "string") return "";
  return typeof error.port === "number" ? ` at ${error.address}:${error.port}` : ` at ${error.address}`;
}

/** The command a NOPERM reply names ("...to run the 'config|get' command"), as "CONFIG GET". */
export function deniedCommand(message: string): string | undefined {
  const match = /run the '([^']+)' command/.exec(message);
  return match === null ? undefined : (match[1] as string).replace("|", " ").toUpperCase();
}

function replyCause(message: string): StoreCause | undefined {
  if (message.startsWith("WRONGPASS")) {
    return {
      kind: "auth",
      message:
        "Redis refused the user name or password (WRONGPASS, or the user is disabled); check user:password in TURNOMATIC_STORE",
    };
  }
  if (message.startsWith("NOAUTH")) {
    return {
      kind: "auth",
      message: "Redis requires authentication (NOAUTH); put user:password in TURNOMATIC_STORE (redis://user:password@host:port)",
    };
  }
  if (message.startsWith("NOPERM")) {
    const command = deniedCommand(message);
    const what = command === undefined ? "access to the keys it uses (grant ~* or the key prefix's pattern)" : command;
    return {
      kind: "acl",
      message: `the Redis user may not run a command the service needs: ${what} (NOPERM); grant it to the user in the Redis ACL or the provider's console`,
    };
  }
  if (message.startsWith("LOADING")) {
    return { kind: "loading", message: "Redis is loading its data set into memory and answers nothing else until it is done" };
  }
  return undefined;
}

function codeCause(code: string, error: ErrorLike): StoreCause | undefined {
  if (UNTRUSTED.has(code)) {
    return {
      kind: "tls-untrusted",
      message: `the Redis server's TLS certificate is not trusted (${error.message}); give the CA bundle that signed it with --redis-tls-ca`,
    };
  }
  if (EXPIRED.has(code)) {
    return { kind: "tls-expired", message: `the Redis server's TLS certificate is not valid now (${error.message})` };
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return {
      kind: "tls-hostname",
      message: `the Redis server's TLS certificate does not name the host the service connects to (${error.message}); use a host name the certificate lists in TURNOMATIC_STORE`,
    };
  }
  if (/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA|ALERT_CERTIFICATE/.test(code)) {
    return {
      kind: "tls-client-certificate",
      message: `the Redis server refused the TLS handshake (${code}); if it requires a client certificate, give --redis-tls-cert and --redis-tls-key`,
    };
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG") {
    return {
      kind: "tls-mismatch",
      message: "the Redis server does not speak TLS on this port; use redis:// (no TLS) or the server's TLS port",
    };
  }
  if (code === "ECONNREFUSED") {
    return { kind: "refused", message: `Redis refused the connection${at(error)} (is it running, and is the port right?)` };
  }
  if (code === "ETIMEDOUT" || code === "ECONNABORTED") {
    return { kind: "timeout", message: `connecting to Redis${at(error)} timed out (a firewall, or a host that is down?)` };
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return { kind: "dns", message: `the Redis host name does not resolve (${error.message})` };
  }
  if (code === "ECONNRESET" || code === "EPIPE") {
    return {
      kind: "reset",
      message: `the Redis server closed the connection${at(error)} (a TLS port reached with redis://, or a proxy that dropped it?)`,
    };
  }
  return undefined;
}

/**
 * The cause behind an ioredis or Node error, or undefined for errors that are not about reaching
 * Redis (script errors, replies the store handles itself). "not-connected" means the command never
 * ran for want of a connection: the connection's own last cause says why.
 */
export function classifyStoreError(error: unknown): StoreCause | undefined {
  const e = asErrorLike(error);
  if (e === undefined) return undefined;
  const reply = replyCause(e.message);
  if (reply !== undefined) return reply;
  if (typeof e.code === "string") {
    const byCode = codeCause(e.code, e);
    if (byCode !== undefined) return byCode;
  }
  if (e.message === "Command timed out") {
    return { kind: "timeout", message: "Redis did not answer a command in time (option --deadline-ms)" };
  }
  if (e.message.includes("Client network socket disconnected before secure TLS connection was established")) {
    return {
      kind: "reset",
      message:
        "the Redis server closed the connection during the TLS handshake (not a TLS port, or a client certificate required?)",
    };
  }
  if (e.lastNodeError !== undefined) {
    const node = classifyStoreError(e.lastNodeError);
    if (node !== undefined) return node;
  }
  if (NOT_CONNECTED.some((text) => e.message.startsWith(text))) {
    return { kind: "not-connected", message: "the service is not connected to Redis" };
  }
  return undefined;
}
