/**
 * Where a Redis Cluster keeps its store markers: a script may touch keys of one slot only, so every
 * slot has its own marker `<prefix>marker{<tag>}`, with a tag chosen to hash to that slot. A shard
 * that restarts empty loses exactly the markers of its slots, and the reservations of its ids find no
 * marker: store loss is detected per shard, where it happens.
 */
import calculateSlot from "cluster-key-slot";
import type { MarkerLayout } from "./redis-store.ts";

const SLOTS = 16384;

let tags: readonly string[] | undefined;

/** For each slot, a short string that hashes to it (found once, ~170k CRC16s, a few ms). */
function slotTags(): readonly string[] {
  if (tags !== undefined) return tags;
  const found: string[] = new Array(SLOTS);
  let left = SLOTS;
  for (let i = 0; left > 0; i++) {
    const tag = i.toString(36);
    const slot = calculateSlot(tag);
    if (found[slot] === undefined) {
      found[slot] = tag;
      left--;
    }
  }
  tags = found;
  return found;
}

export function clusterMarkerLayout(keyPrefix: string): MarkerLayout {
  const keys = slotTags().map((tag) => `${keyPrefix}marker{${tag}}`);
  // Counter keys are `<prefix>{<id>}` and ids have no braces, so the id alone gives the slot.
  return { forId: (id) => keys[calculateSlot(id)] as string, all: () => keys };
}
