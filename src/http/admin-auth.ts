import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Checks `Authorization: Bearer <token>` in constant time. Both sides are hashed first so the
 * comparison takes the same time whatever the presented token's length.
 */
export function createAdminAuth(token: string): (authorization: string | null) => boolean {
  const expected = createHash("sha256").update(token).digest();
  return (authorization) => {
    if (authorization === null || !authorization.startsWith("Bearer ")) return false;
    const presented = createHash("sha256").update(authorization.slice(7)).digest();
    return timingSafeEqual(expected, presented);
  };
}
