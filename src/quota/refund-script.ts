// The Lua script that refunds one allowed charge (refund.ts gives the rules; this is their
// transcription, same integer arithmetic). A separate script from the charge's so that the charge
// path stays one EVALSHA of one script.
//
// KEYS[1]      the request id key of the charge (as in charge-script.ts)
// KEYS[1 + i]  the key of limit i, exactly as the charge named it
// ARGV[1]      nowMs of the charge
// ARGV[2]      1 = the charge had a request id: refund only while that key still holds the charge's
//              nowMs (so a refund is applied once, and never to another charge), then delete it
// ARGV[3]      n, the number of limits; then 4 values per limit from ARGV[4]:
//              algorithm ('g', 's', 'f'), limit, periodMs, cost to give back (0 = not charged)
// Every write keeps the key's TTL (SET … KEEPTTL): a refund never makes a state live longer.
// Reply: 1 refunded, 0 nothing to refund.
export const REFUND_LUA = `
local floor = math.floor
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function fmt(x) return string.format('%d', x) end

local at = tonumber(ARGV[1])
if ARGV[2] == '1' then
  if redis.call('GET', KEYS[1]) ~= fmt(at) then return 0 end
  redis.call('DEL', KEYS[1])
end
local n = tonumber(ARGV[3])
for i = 1, n do
  local a = 3 + (i - 1) * 4
  local alg = ARGV[a + 1]
  local L, P, cost = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local raw = cost > 0 and redis.call('GET', KEYS[i + 1])
  if raw then
    local value
    if alg == 'g' then
      local t, r = string.match(raw, '^(%-?%d+):(%d+)$')
      if t then
        local ticks = (tonumber(t) - at) * L + tonumber(r) - cost * P
        local whole = idiv(ticks, L)
        value = fmt(at + whole) .. ':' .. fmt(ticks - whole * L)
      end
    elseif alg == 's' then
      local si, sp, sc = string.match(raw, '^(%-?%d+):(%d+):(%d+)$')
      if si then
        si, sp, sc = tonumber(si), tonumber(sp), tonumber(sc)
        local index = idiv(at, P)
        if si == index then
          value = fmt(si) .. ':' .. fmt(sp) .. ':' .. fmt(math.max(0, sc - cost))
        elseif si == index + 1 then
          value = fmt(si) .. ':' .. fmt(math.max(0, sp - cost)) .. ':' .. fmt(sc)
        end
      end
    else
      local c = string.match(raw, '^(%d+)$')
      if c then value = fmt(math.max(0, tonumber(c) - cost)) end
    end
    if value then redis.call('SET', KEYS[i + 1], value, 'KEEPTTL') end
  end
end
return 1
`;
