import { createHash, timingSafeEqual } from "node:crypto";

/**
 * `Bearer`, then one or more spaces, then the credentials. The scheme is case-insensitive
 * (RFC 9110 §11.1: "bearer" and "BEARER" name the same scheme) and `1*SP` separates it (§11.4).
 */
const BEARER = /^bearer +/i;

/**
 * Checks `Authorization: Bearer <token>` in constant time. Both sides are hashed first so the
 * comparison takes the same time whatever the presented token's length.
 */
export function createAdminAuth(token: string): (authorization: string | null) => boolean {
  const expected = createHash("sha256").update(token).digest();
  return (authorization) => {
    const scheme = authorization === null ? null : BEARER.exec(authorization);
    if (authorization === null || scheme === null) return false;
    const presented = createHash("sha256").update(authorization.slice(scheme[0].length)).digest();
    return timingSafeEqual(expected, presented);
  };
}
