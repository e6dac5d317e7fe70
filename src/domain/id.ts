import { InvalidIdError } from "./errors.ts";
import { ID_PATTERN } from "./limits.ts";

/**
 * Turns the raw path segment into an id, or throws InvalidIdError. The segment is percent-decoded
 * first (RFC 3986 §2.1), so `%41` is `A` and `%2F` is an invalid `/`.
 */
export function parseId(rawSegment: string): string {
  let id = rawSegment;
  if (rawSegment.includes("%")) {
    try {
      id = decodeURIComponent(rawSegment);
    } catch {
      throw new InvalidIdError();
    }
  }
  if (!ID_PATTERN.test(id)) throw new InvalidIdError();
  return id;
}
