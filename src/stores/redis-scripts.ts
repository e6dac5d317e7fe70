/**
 * Lua scripts of the Redis stores. Each runs atomically on the server (one reservation = one script
 * call). A counter is one hash `<prefix>{<id>}` with fields `v` (last issued value) and `e` (epoch);
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

/** Shared prologue: read, fence forward if the store went backwards, clamp at the maximum. */
const RESERVE_PROLOGUE = `
local value = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local epoch = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
local fenced = 0
if ARGV[3] ~= '' then
  local floor = tonumber(ARGV[3])
  local fence_epoch = tonumber(ARGV[4])
  if epoch < fence_epoch or (epoch == fence_epoch and value < floor) then
    fenced = 1
    if value < floor then
      redis.call('HSET', KEYS[1], 'v', ARGV[3])
      value = floor
    end
    if epoch ~= fence_epoch then
      redis.call('HSET', KEYS[1], 'e', ARGV[4])
      epoch = fence_epoch
    end
  end
end
local n = tonumber(ARGV[1])
local left = tonumber(ARGV[2]) - value
if n > left then n = left end
`;

/**
 * KEYS[1] counter hash. ARGV: n, max, fence floor ('' = none), fence epoch.
 * Returns {first, count, epoch, fenced}.
 */
export const RESERVE_SCRIPT = `${RESERVE_PROLOGUE}
if n <= 0 then return ${reply("value + 1", "0", "epoch", "fenced")} end
local last = redis.call('HINCRBY', KEYS[1], 'v', n)
return ${reply("last - n + 1", "n", "epoch", "fenced")}
`;

/**
 * KEYS[1] counter hash, KEYS[2] idempotency key. ARGV: 1, max, fence floor, fence epoch, ttl ms.
 * Returns {first, count, epoch, fenced, replayed}.
 */
export const RESERVE_IDEMPOTENT_SCRIPT = `
local seen = redis.call('GET', KEYS[2])
if seen then
  local epoch = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
  return {seen, '1', ${D.replace("%s", "epoch")}, '0', '1'}
end
${RESERVE_PROLOGUE}
if n <= 0 then return ${reply("value + 1", "0", "epoch", "fenced", "0")} end
local last = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('SET', KEYS[2], string.format('%d', last), 'PX', ARGV[5])
return ${reply("last", "1", "epoch", "fenced", "0")}
`;

/** KEYS[1] counter hash. ARGV: value. Sets the value, raises the epoch; returns {value, epoch}. */
export const SET_SCRIPT = `
redis.call('HSET', KEYS[1], 'v', ARGV[1])
local epoch = redis.call('HINCRBY', KEYS[1], 'e', 1)
return {ARGV[1], ${D.replace("%s", "epoch")}}
`;
