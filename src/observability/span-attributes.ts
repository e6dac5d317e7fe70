/**
 * Every span and resource attribute name Turnomatic sets, in one place, so dashboards and queries
 * (e.g. in Honeycomb) have one list to rely on. HTTP names follow OpenTelemetry's HTTP server
 * semantic conventions (https://opentelemetry.io/docs/specs/semconv/http/http-spans/), taken from
 * @opentelemetry/semantic-conventions where it marks them stable; the two resource names it still
 * calls incubating are copied here, as that package asks (its incubating entry point may change in a
 * minor release). Our own attributes are `turnomatic.*`.
 */
import type { RouteName } from "../http/router.ts";

export {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from "@opentelemetry/semantic-conventions";

/** Resource: the machine's host name (semconv `host.name`, incubating). */
export const ATTR_HOST_NAME = "host.name";
/** Resource: the process id (semconv `process.pid`, incubating); each worker is its own resource. */
export const ATTR_PROCESS_PID = "process.pid";
/** Resource: the runtime (semconv `process.runtime.name` / `.version`, incubating): bun and its version. */
export const ATTR_PROCESS_RUNTIME_NAME = "process.runtime.name";
export const ATTR_PROCESS_RUNTIME_VERSION = "process.runtime.version";

/**
 * The route template of each route with an id (`http.route`, and the span name "METHOD template").
 * A path no route matches is traced without `http.route`, its span named by the method alone, as
 * the conventions ask.
 */
export const HTTP_ROUTES: Readonly<Partial<Record<RouteName, string>>> = {
  turno: "/turno/{id}",
  actual: "/turno/{id}/actual",
  admin: "/admin/turno/{id}",
};

/** Routes that make no span: a load balancer's probes every second would outnumber the turns in a sampled trace store. */
export const UNTRACED_ROUTES: ReadonlySet<RouteName> = new Set<RouteName>(["healthz", "readyz"]);

/** The id of a turn request. */
export const ATTR_ID = "turnomatic.id";
/** The number handed out (absent when the request failed). */
export const ATTR_TURNO = "turnomatic.turno";
/** How many requests shared this request's store round trip. */
export const ATTR_BATCH_SIZE = "turnomatic.batch_size";
/** Duration of that store round trip, in milliseconds. */
export const ATTR_STORE_MS = "turnomatic.store_ms";
/** "ok", or the error code (TURNO_ERR_...) a request that failed with one was answered with. */
export const ATTR_OUTCOME = "turnomatic.outcome";
/** Which store serves the request (memory, sqlite, redis...). */
export const ATTR_STORE_KIND = "turnomatic.store";
