/**
 * How a request picks its id. `hot`: 90% of requests on the first id (one contended counter, the
 * coalescer's best and the store's worst case), the rest uniform; `uniform`; `zipf` with s = 1.1
 * (a few busy queues and a long tail), by binary search over the cumulative weights.
 */
import type { Distribution } from "./options.ts";

export const ZIPF_S = 1.1;
export const HOT_SHARE = 0.9;

export function idName(prefix: string, index: number): string {
  return `${prefix}${index}`;
}

export function allIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => idName(prefix, i));
}

/** Returns a function that draws an id index in [0, count). */
export function createPicker(dist: Distribution, count: number, random: () => number = Math.random): () => number {
  if (count === 1) return () => 0;
  if (dist === "uniform") return () => Math.floor(random() * count);
  if (dist === "hot") return () => (random() < HOT_SHARE ? 0 : Math.floor(random() * count));
  const cdf = new Float64Array(count);
  let total = 0;
  for (let k = 0; k < count; k++) {
    total += 1 / (k + 1) ** ZIPF_S;
    cdf[k] = total;
  }
  return () => {
    const u = random() * total;
    let lo = 0;
    let hi = count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
