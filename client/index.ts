/**
 * @turnomatic/client: exactly-once ticket numbers from a Turnomatic service (README.md here, and
 * docs/guides/client-guide.md for which call to use when).
 */
export {
  type CallOptions,
  type Current,
  type FetchLike,
  type RetryEvent,
  type Turn,
  TurnomaticClient,
  type TurnomaticClientOptions,
  type TurnRange,
} from "./client.ts";
export {
  AbortedError,
  AttemptError,
  BadResponseError,
  CLIENT_CODES,
  type ClientCode,
  CounterExhaustedError,
  type ErrorCode,
  InvalidIdError,
  InvalidRequestError,
  type Problem,
  SERVER_CODES,
  type ServerCode,
  TurnomaticError,
  UnavailableError,
} from "./errors.ts";
export { DEFAULT_RETRY, parseRetryAfter, type RetryOptions, retryDelayMs } from "./retry.ts";
