/**
 * Hostile requests turnoload can mix into its load (--hostile F) on the ids under load: invalid
 * ids, methods that must not increment, bad idempotency keys, admin without a token. Each must be
 * refused with a 4xx (OPTIONS: 204); an increment caused by one shows up as a gap in the history.
 */
export interface HostileRequest {
  readonly kind: string;
  readonly method: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
}

export function hostileRequest(id: string, random: () => number = Math.random): HostileRequest {
  const forms: (() => HostileRequest)[] = [
    () => ({
      kind: "method",
      method: ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"][Math.floor(random() * 5)] as string,
      path: `/turno/${id}`,
    }),
    () => ({ kind: "bad-id", method: "GET", path: `/turno/${id}%21` }),
    () => ({ kind: "slash-id", method: "GET", path: `/turno/${id}%2Fx` }),
    () => ({ kind: "long-id", method: "GET", path: `/turno/${id}${"x".repeat(65)}` }),
    () => ({ kind: "bad-encoding", method: "GET", path: `/turno/${id}%ZZ` }),
    () => ({ kind: "nul", method: "POST", path: `/turno/${id}%00` }),
    () => ({ kind: "bad-key", method: "GET", path: `/turno/${id}`, headers: { "idempotency-key": "k".repeat(200) } }),
    () => ({ kind: "unknown-path", method: "GET", path: `/turno/${id}/next` }),
    () => ({
      kind: "admin-no-token",
      method: "PUT",
      path: `/admin/turno/${id}`,
      headers: { "content-type": "application/json" },
    }),
  ];
  return (forms[Math.floor(random() * forms.length)] as () => HostileRequest)();
}
