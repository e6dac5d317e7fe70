/**
 * Lua scripts of the Redis stores. Each runs atomically on the server. A counter is one hash `<prefix>{<id>}` with fields `v` (last issued value) and `e` (epoch);
 * its idempotency keys are `<prefix>{<id>}:idem:<key>`, in the same cluster slot thanks to the
 * `{<id>}` hash tag.
 *
 * Precision: Lua numbers are doubles, exact for every value up to 2^53, but Lua's tostring() prints
 * only 14 significant digits. So values are never written through tostring(): increments go through
 * HINCRBY (integer arithmetic in Redis), fence floors are written from the caller's decimal strings,
 * and the one value written from Lua uses string.format('%d'), which is exact on 64-bit builds.
 *
 * Replies are decimal strings, not RESP integers: ioredis 6's RESP decoder computes
 * `n * 10 + byte - 48` left to right, so `n * 10 + byte` rounds once it passes 2^53 and integer
 * replies near MAX_SAFE_INTEGER come back wrong (9007199254740989 arrives as ...988). Bulk strings
 * are parsed by us with Number(), which is exact. docs/postmortems/ tells how the store conformance
 * suite found it.
 */
const D = "string.format('%d', %s)";
const reply = (...values: string[]) => `{${values.map((v) => D.replace("%s", v)).join(", ")}}`;

/**
 * The reservation rule (the same as src/domain/plan-reservation.ts): read, fence forward if the store
 * went backwards, clamp at the maximum, then HINCRBY. `floor` and `fence_epoch` are the caller's
 * decimal strings ('' = no fence), written back verbatim when fencing. Returns first, count, epoch,
 * fenced (1/0).
 */
const RESERVE_FUNCTION = `
local function reserve(key, n, max, floor, fence_epoch)
  local stored = redis.call('HMGET', key, 'v', 'e')
  local value = tonumber(stored[1] or '0')
  local epoch = tonumber(stored[2] or '0')
  local fenced = 0
  if floor ~= '' then
    local floor_n = tonumber(floor)
    local fence_epoch_n = tonumber(fence_epoch)
    if epoch < fence_epoch_n or (epoch == fence_epoch_n and value < floor_n) then
      fenced = 1
      if value < floor_n then
        redis.call('HSET', key, 'v', floor)
        value = floor_n
      end
      if epoch ~= fence_epoch_n then
        redis.call('HSET', key, 'e', fence_epoch)
        epoch = fence_epoch_n
      end
    end
  end
  local left = max - value
  if n > left then n = left end
  if n <= 0 then return value + 1, 0, epoch, fenced end
  local last = redis.call('HINCRBY', key, 'v', n)
  return last - n + 1, n, epoch, fenced
end
`;

/**
 * KEYS[1] counter hash. ARGV: n, max, fence floor ('' = none), fence epoch.
 * Returns {first, count, epoch, fenced}.
 */
export const RESERVE_SCRIPT = `${RESERVE_FUNCTION}
local first, count, epoch, fenced = reserve(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4])
return ${reply("first", "count", "epoch", "fenced")}
`;

/**
 * Many counters in one call (single-node Redis only: the keys may live in different cluster slots).
 * KEYS: counter hashes. ARGV: max, then n, fence floor, fence epoch for each key.
 * Returns first, count, epoch, fenced for each key, flattened.
 */
export const RESERVE_MANY_SCRIPT = `${RESERVE_FUNCTION}
local max = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 3
  local first, count, epoch, fenced = reserve(KEYS[i], tonumber(ARGV[at]), max, ARGV[at + 1], ARGV[at + 2])
  local base = (i - 1) * 4
  out[base + 1] = ${D.replace("%s", "first")}
  out[base + 2] = ${D.replace("%s", "count")}
  out[base + 3] = ${D.replace("%s", "epoch")}
  out[base + 4] = ${D.replace("%s", "fenced")}
end
return out
`;

/**
 * KEYS[1] counter hash, KEYS[2] idempotency key. ARGV: 1, max, fence floor, fence epoch, ttl ms.
 * Returns {first, count, epoch, fenced, replayed}.
 */
export const RESERVE_IDEMPOTENT_SCRIPT = `${RESERVE_FUNCTION}
local seen = redis.call('GET', KEYS[2])
if seen then
  local epoch = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
  return {seen, '1', ${D.replace("%s", "epoch")}, '0', '1'}
end
local first, count, epoch, fenced = reserve(KEYS[1], 1, tonumber(ARGV[2]), ARGV[3], ARGV[4])
if count > 0 then redis.call('SET', KEYS[2], ${D.replace("%s", "first")}, 'PX', ARGV[5]) end
return ${reply("first", "count", "epoch", "fenced", "0")}
`;

/** KEYS[1] counter hash. ARGV: value. Sets the value, raises the epoch; returns {value, epoch}. */
export const SET_SCRIPT = `
redis.call('HSET', KEYS[1], 'v', ARGV[1])
local epoch = redis.call('HINCRBY', KEYS[1], 'e', 1)
return {ARGV[1], ${D.replace("%s", "epoch")}}
`;
