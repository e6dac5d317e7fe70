/**
 * Lua scripts of the Redis stores. Each runs atomically on the server.
 *
 * Keys. A counter is one hash `<prefix>{<id>}`: `v` last issued value, `e` epoch, `s` numbers
 * skipped without being issued (recovery floors, fences, admin moves, daily resets) and `d` numbers
 * reported delivered (the ledger: issued = v - s, lost = issued - d), `g` the store generation it was
 * last written in, and for an id with a daily reset `z` = "<day start ms> <schedule text>": the day
 * it counts in and its schedule (daily-schedule.ts), one field so the HMGET that reads the counter
 * reads it too. Its idempotency keys are `<prefix>{<id>}:idem:<key>`, in the same cluster slot thanks to the
 * `{<id>}` hash tag. The store marker (store-guard.ts) is a hash `<prefix>marker` on a single node,
 * and one hash per slot `<prefix>marker{<tag>}` on a Cluster (a script may only touch one slot):
 * `uid`, `gen`, `recovered`, `floor`, `halted`, `seq` (raised by every reservation), and the
 * store-wide ledger `ti`, `td`.
 *
 * Precision: Lua numbers are doubles, exact for every value up to 2^53, but Lua's tostring() prints
 * only 14 significant digits. So numbers are written with string.format('%d'), which is exact on
 * 64-bit builds, never through tostring().
 *
 * Replies are decimal strings, not RESP integers: ioredis 6's RESP decoder computes
 * `n * 10 + byte - 48` left to right, so `n * 10 + byte` rounds once it passes 2^53 and integer
 * replies near MAX_SAFE_INTEGER come back wrong (9007199254740989 arrives as ...988). Bulk strings
 * are parsed by us with Number(), which is exact. docs/reports/postmortems/ tells how the store conformance
 * suite found it.
 *
 * Cost: per call, one HMGET and one HSET of the marker; per id, one HMGET and one HINCRBY of the
 * counter; per idempotency key one SET NX (a new key) or one SET NX and one GET (a replay). That is as many commands per id as the INCR-like
 * HINCRBY of before the ledger, and the marker work is shared by every id of a call. Batch turns
 * add no command: only a loop over the waiters' sizes (GRANT_SIZED), for the ids that have them.
 * Daily resets add no command per id: the HMGET reads `z` too, and while the caller's day is the
 * stored one (the same string) nothing more is done; only a new day writes it (once a day per id).
 */

/** Errors the scripts raise; the store maps them to StoreLostError / StoreRollbackError. */
export const LOST_REPLY = "TURNO_LOST";
export const HALTED_REPLY = "TURNO_HALTED";

const PRELUDE = `
local function fmt(x) return string.format('%d', x) end
local function num(x) if x < 4503599627370496 then return x end return fmt(x) end
`;

/**
 * The marker check: the marker must carry the caller's uid, not be halted, and its sequence must not
 * be below the highest the caller saw acknowledged; a sequence that went backwards halts the store
 * for every process. An empty uid (a store used before attach) skips the check.
 */
const CHECK_MARKER = `
local function check_marker(marker, uid, seen)
  local m = redis.call('HMGET', marker, 'uid', 'seq', 'halted', 'gen', 'floor', 'ti')
  if uid ~= '' then
    if m[1] ~= uid then return nil, '${LOST_REPLY} ' .. (m[1] or 'none') end
    if m[3] then return nil, '${HALTED_REPLY} ' .. m[3] end
    if tonumber(m[2] or '0') < tonumber(seen) then
      local reason = 'sequence ' .. (m[2] or '0') .. ' is below ' .. seen .. ', seen acknowledged by a process'
      redis.call('HSET', marker, 'halted', reason)
      return nil, '${HALTED_REPLY} ' .. reason
    end
  end
  return m
end
`;

/**
 * One keyed waiter's reply, appended to `out`: (turno, 0) when it was granted `turno`, else what its
 * key `idem` recorded before (seen, 1), or ('0', 0) when nothing (a waiter that did not fit); leaves
 * `seen` set for the caller. Both grant paths share it; inlined like NEW_DAY, not a Lua function.
 */
const KEY_REPLY = `
      local slot, seen = #out, nil
      if turno then
        out[slot + 1], out[slot + 2] = turno, 0
      else
        seen = redis.call('GET', idem)
        if seen then out[slot + 1], out[slot + 2] = seen, 1 else out[slot + 1], out[slot + 2] = '0', 0 end
      end`;

/**
 * The grant of an id whose waiters want several numbers each (batch turns), apart from the common
 * path so that path stays as it was. Greedy in waiter order, all or nothing per waiter, as
 * plan-reservation.ts's grantSized: a waiter that fits in what is left takes the next `size` numbers
 * (a keyed one is offset by the sizes granted before it, not by its position), one that does not fit
 * takes none and later ones may still fit; a key seen before answers its recorded range and takes
 * none. A key records "first" for one number and "first:size" for more, so a replay (here or on the
 * common path) tells its size. `positions`: ARGV index before the k keyed positions; `sizes`: ARGV
 * index of the first of the w sizes. Returns the numbers granted.
 */
const GRANT_SIZED = `
local function grant_sized(ki, positions, sizes, k, w, value, left, ttl, out)
  local granted, j = 0, 1
  local keyed_at = -1
  if k > 0 then keyed_at = tonumber(ARGV[positions + 1]) end
  for i = 0, w - 1 do
    local size = tonumber(ARGV[sizes + i])
    local fits = size <= left - granted
    if i ~= keyed_at then
      if fits then granted = granted + size end
    else
      local idem, turno = KEYS[ki + j], nil
      if fits then
        turno = fmt(value + 1 + granted)
        local record = turno
        if size > 1 then record = turno .. ':' .. fmt(size) end
        if redis.call('SET', idem, record, 'PX', ttl, 'NX') then granted = granted + size else turno = nil end
      end${KEY_REPLY}
      j = j + 1
      keyed_at = -1
      if j <= k then keyed_at = tonumber(ARGV[positions + j]) end
    end
  end
  return granted
end
`;

/**
 * The daily reset of one id, the rarely taken branch of RESERVE_SCRIPT (plan-reservation.ts planDay
 * is the same rule), run only when the id's `z` (`stored`, nil = no schedule) is not the request's
 * day string (`day`, same form; '' = the caller knows no schedule). When the schedules differ it sets
 * `changed` to the stored one ('' for none): then nothing is reserved. Otherwise, when the caller's
 * day starts later than the stored one, it moves the counter to a new day like SET_SCRIPT to 0
 * (epoch raised, the move booked in `s` so issued = v - s is unchanged). Inlined, not a function:
 * defining functions costs every call (measured: ~1.4 us per call on a 1-id call).
 */
const NEW_DAY = `
    local stored, start, held, since, schedule = c[4], 0, '', 0, ''
    if day ~= '' then
      local sp = string.find(day, ' ', 1, true)
      start, held = tonumber(string.sub(day, 1, sp - 1)), string.sub(day, sp + 1)
    end
    if stored then
      local sp = string.find(stored, ' ', 1, true)
      since, schedule = tonumber(string.sub(stored, 1, sp - 1)), string.sub(stored, sp + 1)
    end
    if schedule ~= held then
      changed = schedule
    elseif start > since then
      redis.call('HSET', key, 'z', day)
      if value > 0 then redis.call('HINCRBY', key, 's', fmt(-value)) end
      value, epoch = 0, epoch + 1
    end`;

/**
 * Reservations of one or more ids (one id per call on a Cluster, whose keys may not span slots).
 * The rule is src/domain/plan-reservation.ts's, in Lua.
 *
 * KEYS: marker, then for each id its counter hash followed by its k idempotency keys.
 * ARGV: uid, seen, max, key ttl ms, then for each id: n, fence floor ('' = none), fence epoch, k,
 *       and the k batch positions of the keyed waiters; an id with batch turns (request.sizes) sends
 *       -n instead of n and, after the positions, the n sizes (GRANT_SIZED); last, its day ('' =
 *       none, else "<day start ms> <schedule text>"; NEW_DAY).
 * Returns: seq, then for each id first, count, epoch, fenced (1/0), and (turno, replayed) per key
 *       (a replayed batch key answers "first:count"); an id whose schedule the caller did not know
 *       answers its schedule text in place of first ('' = none), 0, epoch, 2, and ('0', 0) per key,
 *       and reserves nothing.
 *
 * The common path per id is two commands and no string formatting: HMGET v e g, HINCRBY v. The
 * ledger's `issued` is not written: it is `v - s`, where `s` counts the numbers a counter skipped
 * without issuing them (a recovery floor, a fence; admin moves in SET_SCRIPT), written only then.
 * Replies are RESP integers below 2^52, where ioredis decodes them exactly, else decimal strings.
 */
export const RESERVE_SCRIPT = `${PRELUDE}${CHECK_MARKER}${GRANT_SIZED}
local m, err = check_marker(KEYS[1], ARGV[1], ARGV[2])
if not m then return redis.error_reply(err) end
local gen = tonumber(m[4] or '0')
local gfloor = tonumber(m[5] or '0')
local max = tonumber(ARGV[3])
local ttl = ARGV[4]
local out = {''}
local ki, ai = 2, 5
local sum_n = 0
while ai <= #ARGV do
  repeat -- Lua 5.1 has no 'continue': a break moves on to the next id
  local key = KEYS[ki]
  local n, floor, k = tonumber(ARGV[ai]), ARGV[ai + 1], tonumber(ARGV[ai + 3])
  local w = 0 -- the sizes after the positions (batch turns)
  if n < 0 then w = -n end
  local c = redis.call('HMGET', key, 'v', 'e', 'g', 'z')
  local value, epoch = tonumber(c[1] or '0'), tonumber(c[2] or '0')
  local day, changed = ARGV[ai + 4 + k + w], nil
  -- The same day of the same schedule (or none on either side) needs nothing: one string compare.
  if (c[4] or '') ~= day then${NEW_DAY}
  end
  if changed then
    local at = #out
    out[at + 1], out[at + 2], out[at + 3], out[at + 4] = changed, 0, epoch, 2
    for j = 1, k do out[at + 3 + 2 * j], out[at + 4 + 2 * j] = '0', 0 end
    ki, ai = ki + 1 + k, ai + 5 + k + w
    break
  end
  local start, dirty = value, epoch ~= tonumber(c[2] or '0')
  if tonumber(c[3] or '0') < gen then
    dirty = true
    if value < gfloor then value = gfloor end
  end
  local fenced = 0
  if floor ~= '' then
    local floor_n, fence_epoch = tonumber(floor), tonumber(ARGV[ai + 2])
    if epoch < fence_epoch or (epoch == fence_epoch and value < floor_n) then
      fenced, dirty, epoch = 1, true, fence_epoch
      if value < floor_n then value = floor_n end
    end
  end
  -- Keyed waiters in batch order: a fresh key takes the next fresh number (SET NX, one call), a key
  -- seen before answers its old number and takes none, so the waiters after it move down by one.
  local left = max - value
  local at, before = #out, 0
  out[at + 1], out[at + 2], out[at + 3], out[at + 4] = num(value + 1), 0, epoch, fenced
  local want
  if n < 0 then
    want = grant_sized(ki, ai + 3, ai + 4 + k, k, w, value, left, ttl, out)
  else
    for j = 1, k do
      local idem, index = KEYS[ki + j], tonumber(ARGV[ai + 3 + j]) - before
      local turno = nil
      if index < left then
        turno = fmt(value + 1 + index)
        if not redis.call('SET', idem, turno, 'PX', ttl, 'NX') then turno = nil end
      end${KEY_REPLY}
      if seen then before = before + 1 end
    end
    want = n - before
    if want > left then want = left end
    if want < 0 then want = 0 end
  end
  out[at + 2] = want
  if dirty then
    redis.call('HSET', key, 'v', fmt(value + want), 'e', fmt(epoch), 'g', fmt(gen))
    if value > start then redis.call('HINCRBY', key, 's', fmt(value - start)) end
  elseif want > 0 then
    redis.call('HINCRBY', key, 'v', want)
  end
  sum_n = sum_n + want
  ki, ai = ki + 1 + k, ai + 5 + k + w
  until true
end
local seq = tonumber(m[2] or '0') + 1
redis.call('HSET', KEYS[1], 'seq', fmt(seq), 'ti', fmt(tonumber(m[6] or '0') + sum_n))
out[1] = fmt(seq)
return out
`;

/**
 * Ledger reports for ids that went quiet. KEYS: marker, counters. ARGV: uid, then delivered per
 * counter. A store that lost its marker refuses them (they belong to the old store).
 */
export const REPORT_SCRIPT = `${PRELUDE}
local uid = redis.call('HGET', KEYS[1], 'uid')
if ARGV[1] ~= '' and uid ~= ARGV[1] then return redis.error_reply('${LOST_REPLY} ' .. (uid or 'none')) end
local total = 0
for i = 2, #KEYS do
  local delivered = tonumber(ARGV[i])
  redis.call('HINCRBY', KEYS[i], 'd', delivered)
  total = total + delivered
end
redis.call('HINCRBY', KEYS[1], 'td', total)
return 'OK'
`;

/**
 * KEYS: counter hash, its marker. ARGV: value. Sets the value, raises the epoch, stamps the store
 * generation (so a recovery floor no longer applies to it), and books the move in `s` so the
 * ledger's `issued = v - s` does not change; returns {value, epoch}.
 */
export const SET_SCRIPT = `${PRELUDE}
local old = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
redis.call('HINCRBY', KEYS[1], 's', fmt(tonumber(ARGV[1]) - old))
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'g', redis.call('HGET', KEYS[2], 'gen') or '0')
local epoch = redis.call('HINCRBY', KEYS[1], 'e', 1)
return {ARGV[1], fmt(epoch)}
`;

/**
 * KEYS: counter hash. ARGV: schedule text ('' = remove it), day start (ms). Stores the id's daily
 * reset, keeping the day at least the one stored, so a new schedule resets nothing until its next
 * boundary; removing it removes `z` (the counter then goes on without resets).
 */
export const SCHEDULE_SCRIPT = `${PRELUDE}
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'z')
  return 'OK'
end
local day = tonumber(ARGV[2])
local stored = redis.call('HGET', KEYS[1], 'z')
if stored then
  local held = tonumber(string.sub(stored, 1, string.find(stored, ' ', 1, true) - 1))
  if held > day then day = held end
end
redis.call('HSET', KEYS[1], 'z', fmt(day) .. ' ' .. ARGV[1])
return 'OK'
`;

/**
 * The marker scripts below run on many marker keys at once: every slot marker a Cluster primary
 * serves, in one call (the flag lets one script touch keys of several slots of one node; Redis 7).
 * Each returns one reply per key, in order. The marker keys come in ARGV (ARGV[1] = how many, then
 * the keys, then the script's own arguments P[1..]): Redis Cluster would refuse declared KEYS of
 * several slots even with the flag, but lets the script touch them.
 */
const MANY_MARKERS = `#!lua flags=allow-cross-slot-keys
local count = tonumber(ARGV[1])
local KEYS = {}
for i = 1, count do KEYS[i] = ARGV[1 + i] end
local P = {}
for i = count + 2, #ARGV do P[#P + 1] = ARGV[i] end`;

/** A marker script: `body` (from a new line) runs once per marker key (`key`, index `i`) and sets `out[i]`, its reply. */
function eachMarker(body: string): string {
  return `${MANY_MARKERS}
local out = {}
for i, key in ipairs(KEYS) do${body}
end
return out
`;
}

const MARKER_FIELDS = "redis.call('HMGET', key, 'uid', 'gen', 'recovered', 'floor', 'halted', 'seq')";

/** P: uid. Writes a first marker where none exists; returns each marker's fields. */
export const INIT_MARKER_SCRIPT = eachMarker(`
  if redis.call('HEXISTS', key, 'uid') == 0 then
    redis.call('HSET', key, 'uid', P[1], 'gen', '1', 'recovered', '0', 'floor', '0')
  end
  out[i] = ${MARKER_FIELDS}`);

/**
 * P: uid, floor, after. An operator's recovery: a generation above the stored one and `after`,
 * no halt. The generation is the same on every key: the highest stored anywhere is passed as `after`
 * by the caller (read first).
 */
export const RECOVER_MARKER_SCRIPT = eachMarker(`
  local gen = math.max(tonumber(redis.call('HGET', key, 'gen') or '0'), tonumber(P[3])) + 1
  redis.call('HDEL', key, 'halted')
  redis.call('HSET', key, 'uid', P[1], 'gen', string.format('%d', gen), 'recovered', '1', 'floor', P[2])
  out[i] = ${MARKER_FIELDS}`);

/** P: reason. Halts every marker that exists (the first reason wins). */
export const HALT_MARKER_SCRIPT = eachMarker(`
  if redis.call('HEXISTS', key, 'uid') == 1 then redis.call('HSETNX', key, 'halted', P[1]) end
  out[i] = 'OK'`);

/** Reads each marker (uid, gen, recovered, floor, halted, seq). */
export const READ_MARKER_SCRIPT = eachMarker(`
  out[i] = ${MARKER_FIELDS}`);

/** The store-wide ledger kept in each marker (ti, td). */
export const TOTALS_SCRIPT = eachMarker(`
  out[i] = redis.call('HMGET', key, 'ti', 'td')`);
