// The Lua script that charges stacked limits in ONE Redis round trip: a line-by-line transcription of
// algorithms.ts (same integer arithmetic, same order of operations, so the same answers; the
// differential test in test/integration/quota-redis.test.ts holds them together). Kept as a TS string,
// not a .lua file, so that `tsc` ships it in dist/ without a copy step.
//
// KEYS[1]      {q:<partner>}:rid:<request id>   (its value: nowMs of the charge; unused when the TTL is 0)
// KEYS[1 + i]  the key of limit i: {q:<partner>}:<limit id> (gcra, sliding_window) or
//              {q:<partner>}:<limit id>:<window id> (fixed_window)
// ARGV[1]      `<mode>:<nowMs>:<request id TTL>:<slack>:<n>`: mode 'c' charge, 'p' peek (evaluate a
//              cost of 1, write nothing); the request id TTL in ms (0 = no idempotency); the slack in
//              ms added to every PX (clock skew between replicas and Redis); n, the number of limits
// ARGV[1 + i]  limit i, `<algorithm>:<limit>:<periodMs>:<burst>:<cost>:<shadow>:<endMs>`: algorithm
//              'g' gcra, 's' sliding_window, 'f' fixed_window; shadow 0/1; endMs the window's end
//              (fixed_window; else 0).
// Fields are packed into one argument each, not one argument per value: every argument costs the
// client a piece of the command to build (the store reuses a limit's string while its spec holds).
//
// Stored values (strings, each written with SET … PX so that every key expires):
//   gcra            "<tatMs>:<tatRem>"        TAT = tatMs + tatRem / limit
//   sliding_window  "<index>:<prev>:<cur>"
//   fixed_window    "<count>"
// A value that does not parse (e.g. the limit changed algorithm) counts as no state.
//
// Reply: integers joined by ':' in ONE bulk string: allowed (0/1), duplicate (0/1), then for each
//   limit remaining, resetMs, exceeded (0/1), retryAfterMs (−1 = never fits). One string, not an
//   array of 2 + 4n integers: ioredis' decoder allocates a bound function per integer it reads.
export const CHARGE_LUA = `
local floor = math.floor
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function ceildiv(a, b) return 0 - idiv(0 - a, b) end
local function fmt(x) return string.format('%d', x) end
local NEVER = -1
local function reply(t)
  for i = 1, #t do t[i] = fmt(t[i]) end
  return table.concat(t, ':')
end

local mode, now, ridTtl, slack, n = string.match(ARGV[1], '^([cp]):(%-?%d+):(%d+):(%d+):(%d+)$')
if not mode then return redis.error_reply('quota script: bad first argument') end
now, ridTtl, slack, n = tonumber(now), tonumber(ridTtl), tonumber(slack), tonumber(n)

-- Returns fits, next value, next ttl, remainingBefore, resetBefore, remainingAfter, resetAfter, retryAfter
local function gcra(raw, L, P, B, cost)
  local cap = B * P
  local diff = 0
  if raw then
    local t, r = string.match(raw, '^(%-?%d+):(%d+)$')
    if t then
      diff = (tonumber(t) - now) * L + math.min(tonumber(r), L - 1)
      if diff < 0 then diff = 0 end
    end
  end
  local need = diff + cost * P
  local fits = need <= cap
  local whole = idiv(need, L)
  local retry = 0
  if not fits then
    if cost > B then retry = NEVER else retry = ceildiv(need - cap, L) end
  end
  return fits, fmt(now + whole) .. ':' .. fmt(need - whole * L), math.max(1, ceildiv(need, L)),
    math.max(0, idiv(cap - diff, P)), ceildiv(diff, L),
    math.max(0, idiv(cap - need, P)), ceildiv(need, L), retry
end

local function sliding(raw, L, P, cost)
  local nowIndex = idiv(now, P)
  local index, prev, cur = nowIndex, 0, 0
  if raw then
    local si, sp, sc = string.match(raw, '^(%-?%d+):(%d+):(%d+)$')
    if si then
      si, sp, sc = tonumber(si), tonumber(sp), tonumber(sc)
      if si == nowIndex then
        prev, cur = sp, sc
      elseif si == nowIndex - 1 then
        prev = sc
      elseif si > nowIndex then
        index, prev, cur = si, sp, sc
      end
    end
  end
  local e = now - index * P
  if e < 0 then e = 0 end
  local LP = L * P
  local weighted = prev * (P - e) + cur * P
  local need = weighted + cost * P
  local fits = need <= LP
  local retry = 0
  if not fits then
    if cost > L then
      retry = NEVER
    elseif L - cost - cur >= 0 then
      retry = index * P + (P - idiv((L - cost - cur) * P, prev)) - now
    else
      retry = (index + 1) * P + (P - idiv((L - cost) * P, cur)) - now
    end
  end
  local resetBefore = 0
  if cur > 0 then resetBefore = (index + 2) * P - now elseif prev > 0 then resetBefore = (index + 1) * P - now end
  local resetAfter = (index + 2) * P - now
  return fits, fmt(index) .. ':' .. fmt(prev) .. ':' .. fmt(cur + cost), math.max(1, resetAfter),
    math.max(0, idiv(LP - weighted, P)), resetBefore,
    math.max(0, idiv(LP - need, P)), resetAfter, retry
end

local function fixed(raw, L, cost, wend)
  local count = 0
  if raw then
    local c = string.match(raw, '^(%d+)$')
    if c then count = tonumber(c) end
  end
  local fits = count + cost <= L
  local untilEnd = math.max(0, wend - now)
  local retry = 0
  if not fits then
    if cost > L then retry = NEVER else retry = math.max(1, untilEnd) end
  end
  return fits, fmt(count + cost), math.max(1, untilEnd),
    math.max(0, L - count), untilEnd, math.max(0, L - count - cost), untilEnd, retry
end

local duplicate = false
if mode == 'c' and ridTtl > 0 then
  local at = redis.call('GET', KEYS[1])
  if at and now - tonumber(at) < ridTtl then duplicate = true end
end

local ev = {}
local allowed = true
for i = 1, n do
  local alg, L, P, B, cost, shadow, wend =
    string.match(ARGV[1 + i], '^(%a):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d+):([01]):(%-?%d+)$')
  if not alg then return redis.error_reply('quota script: bad limit argument ' .. i) end
  L, P, B, cost, wend = tonumber(L), tonumber(P), tonumber(B), tonumber(cost), tonumber(wend)
  shadow = shadow == '1'
  local raw = redis.call('GET', KEYS[i + 1])
  local r
  if alg == 'g' then
    r = { gcra(raw, L, P, B, cost) }
  elseif alg == 's' then
    r = { sliding(raw, L, P, cost) }
  else
    r = { fixed(raw, L, cost, wend) }
  end
  ev[i] = r
  if not shadow and not r[1] then allowed = false end
end

local out = {}
if duplicate then
  out[1], out[2] = 1, 1
  for i = 1, n do
    local r = ev[i]
    local o = 2 + (i - 1) * 4
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = r[4], r[5], 0, 0
  end
  return reply(out)
end

if mode == 'p' then allowed = false end
out[1], out[2] = allowed and 1 or 0, 0
for i = 1, n do
  local r = ev[i]
  local o = 2 + (i - 1) * 4
  if allowed and r[1] then
    redis.call('SET', KEYS[i + 1], r[2], 'PX', fmt(r[3] + slack))
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = r[6], r[7], 0, 0
  elseif r[1] then
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = r[4], r[5], 0, 0
  else
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = r[4], r[5], 1, r[8]
  end
end
if allowed and ridTtl > 0 then
  redis.call('SET', KEYS[1], fmt(now), 'PX', fmt(ridTtl + slack))
end
return reply(out)
`;
