/** The highest turno a counter may ever issue (I4): JavaScript's largest exact integer. */
export const MAX_TURNO = Number.MAX_SAFE_INTEGER;

/** Ids are 1–64 characters of `[A-Za-z0-9_-]`, after percent-decoding; case-sensitive. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Idempotency keys: 1–128 visible ASCII characters, no spaces (RFC 9110 token-ish, kept simple). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;

/** True when `value` may be stored as a counter value (0 means "nothing issued yet"). */
export function isCounterValue(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value <= MAX_TURNO;
}
