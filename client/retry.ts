/**
 * The retry policy: bounded attempts, a bounded total time, jittered exponential backoff, and the
 * server's Retry-After honoured (never retried earlier than it asks; RFC 9110 §10.2.3).
 */

export interface RetryOptions {
  /** Most attempts of one call, the first included; 1 = never retry. Default 5. */
  readonly attempts?: number;
  /** Backoff before the second attempt (ms); doubles each attempt. Default 100. */
  readonly baseDelayMs?: number;
  /** Longest computed backoff between two attempts (ms); Retry-After may ask for more. Default 2000. */
  readonly maxDelayMs?: number;
  /** Longest one call may take, attempts and waits included (ms); no wait starts that would pass it. Default 20000. */
  readonly totalMs?: number;
}

export type RetryPolicy = Required<RetryOptions>;

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 2000, totalMs: 20_000 };

/** Validates the options (a wrong one throws at construction, naming the option) and fills the defaults. */
export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  const policy = { ...DEFAULT_RETRY, ...definedOnly(options) };
  check(Number.isInteger(policy.attempts) && policy.attempts >= 1, "retry.attempts must be a whole number >= 1");
  for (const name of ["baseDelayMs", "maxDelayMs", "totalMs"] as const) {
    check(Number.isFinite(policy[name]) && policy[name] >= 0, `retry.${name} must be a number of ms >= 0`);
  }
  return policy;
}

/**
 * The wait before attempt `attempt + 1` (ms). Without Retry-After: "equal jitter", a random point in
 * the upper half of min(maxDelayMs, baseDelayMs * 2^(attempt-1)), so clients that failed together
 * spread out but none retries at once. With Retry-After: that long plus up to one base delay of
 * spread, so a crowd told "1 s" does not come back in the same millisecond.
 */
export function retryDelayMs(
  attempt: number,
  policy: RetryPolicy,
  retryAfterMs: number | undefined,
  random: () => number,
): number {
  if (retryAfterMs !== undefined) return retryAfterMs + random() * policy.baseDelayMs;
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return ceiling / 2 + (random() * ceiling) / 2;
}

/** Retry-After as ms: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, nowMs: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP-date names its day and month ("Wed, 02 Dec 2026 01:00:03 GMT"); Date.parse alone takes "-1" too.
  const at = /^[A-Za-z]{3}/.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

function definedOnly(options: RetryOptions): RetryOptions {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new TypeError(`@turnomatic/client: ${message}`);
}
