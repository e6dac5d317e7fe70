/**
 * Every span attribute name Turnomatic sets, in one place, so dashboards and queries (e.g. in
 * Honeycomb) have one list to rely on. Names follow OpenTelemetry's dotted lower-case style.
 */
export const SPAN_TURN = "turn";

export const ATTR_ID = "turnomatic.id";
/** The number handed out (absent when the request failed). */
export const ATTR_TURNO = "turnomatic.turno";
/** How many requests shared this request's store round trip. */
export const ATTR_BATCH_SIZE = "turnomatic.batch_size";
/** Duration of that store round trip, in milliseconds. */
export const ATTR_STORE_MS = "turnomatic.store_ms";
/** "ok", or the error code (TURNO_ERR_...) the request was answered with. */
export const ATTR_OUTCOME = "turnomatic.outcome";
/** Whether the request carried an Idempotency-Key (the key itself is not recorded). */
export const ATTR_IDEMPOTENT = "turnomatic.idempotent";
/** Which store serves the request (memory, sqlite, redis...). */
export const ATTR_STORE_KIND = "turnomatic.store";
/** Semantic-convention error class, set on failed requests. */
export const ATTR_ERROR_TYPE = "error.type";
