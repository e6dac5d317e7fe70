/**
 * Request routing without URL objects: the hot path only slices the request target. Routes:
 *   /turno/:id          turn (GET, POST)
 *   /turno/:id/actual   last issued value (GET)
 *   /admin/turno/:id    set (PUT) and reset (DELETE), bearer token
 *   /admin/turno/:id/ledger   issued, delivered, lost (GET), bearer token
 *   /admin/turno/:id/schedule daily reset (PUT, GET, DELETE), bearer token
 *   /admin/store/recover      recover a store that lost data (POST), bearer token
 *   /healthz /readyz    liveness and readiness
 * The status page is not here: it is served on the metrics port (src/observability/metrics-server.ts),
 * which an operator does not expose, and which sees every worker of the host.
 */
export type RouteName = "turno" | "actual" | "admin" | "ledger" | "schedule" | "recover" | "healthz" | "readyz" | "not_found";

export interface Route {
  readonly name: RouteName;
  /** The raw (still percent-encoded) id segment, for routes that take one. */
  readonly rawId: string;
  /** The path, for problem details' `instance`. */
  readonly path: string;
}

/** Extracts the path from Bun's absolute request URL (`http://host:port/path?query`). */
export function pathOf(url: string): string {
  const schemeEnd = url.indexOf("://");
  const start = schemeEnd < 0 ? 0 : url.indexOf("/", schemeEnd + 3);
  if (start < 0) return "/";
  let end = url.indexOf("?", start);
  const hash = url.indexOf("#", start);
  if (end < 0 || (hash >= 0 && hash < end)) end = hash;
  return end < 0 ? url.slice(start) : url.slice(start, end);
}

export function route(path: string): Route {
  if (path.startsWith("/turno/")) {
    const rest = path.slice(7);
    const slash = rest.indexOf("/");
    if (slash < 0) return { name: "turno", rawId: rest, path };
    if (rest.slice(slash) === "/actual") return { name: "actual", rawId: rest.slice(0, slash), path };
    return { name: "not_found", rawId: "", path };
  }
  if (path.startsWith("/admin/turno/")) {
    const rest = path.slice(13);
    const slash = rest.indexOf("/");
    if (slash < 0) return { name: "admin", rawId: rest, path };
    if (rest.slice(slash) === "/ledger") return { name: "ledger", rawId: rest.slice(0, slash), path };
    if (rest.slice(slash) === "/schedule") return { name: "schedule", rawId: rest.slice(0, slash), path };
    return { name: "not_found", rawId: "", path };
  }
  if (path === "/admin/store/recover") return { name: "recover", rawId: "", path };
  if (path === "/healthz") return { name: "healthz", rawId: "", path };
  if (path === "/readyz") return { name: "readyz", rawId: "", path };
  return { name: "not_found", rawId: "", path };
}
