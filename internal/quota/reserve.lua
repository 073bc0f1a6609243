-- Reserve decides a request against its counters in one atomic step, on the store's clock.
--
-- KEYS[i]: the base key of counter i; its window's key is KEYS[i] .. ':' .. the window's start
-- in Unix milliseconds.
-- ARGV[1]: the time in Unix milliseconds, or '' for the store's own clock (TIME).
-- ARGV[2]: the request's estimated input tokens. ARGV[3]: the output tokens it asks for.
-- Then four arguments per counter: its window ('s' second, 'm' minute, 'c' calendar), its
-- limit, what it counts (0 requests; else 1 input tokens + 2 output tokens), and, for calendar
-- windows, candidate windows "start,end;start,end;..." in milliseconds (the one that holds
-- the time is used; the first when none does).
--
-- The rule is quota.decide's. Returns {allowed, output granted, now, retry after ms, then per
-- counter: window start, window end, used}.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local input, want = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS
local keys, starts, ends, used, counts = {}, {}, {}, {}, {}
local output, refused, retry = want, 0, 0
for i = 1, n do
  local a = 3 + (i - 1) * 4
  local win, limit, what = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local s, e
  if win == 's' then
    s = now - now % 1000
    e = s + 1000
  elseif win == 'm' then
    s = now - now % 60000
    e = s + 60000
  else
    for cs, ce in string.gmatch(ARGV[a + 4], '(%d+),(%d+)') do
      cs, ce = tonumber(cs), tonumber(ce)
      if s == nil or (now >= cs and now < ce) then
        s, e = cs, ce
      end
    end
  end
  local key = KEYS[i] .. ':' .. string.format('%.0f', s)
  local u = tonumber(redis.call('GET', key) or '0')
  keys[i], starts[i], ends[i], used[i], counts[i] = key, s, e, u, what
  local ok
  if what == 0 then
    ok = u + 1 <= limit
  else
    local room = limit - u
    if what % 2 == 1 then
      room = room - input
    end
    if what >= 2 and want > 0 then
      ok = room >= 1
      if ok and room < output then
        output = room
      end
    else
      ok = room >= 0
    end
  end
  if not ok then
    if refused == 0 then
      refused = i
    end
    if e - now > retry then
      retry = e - now
    end
  end
end
local out = {0, 0, now, retry}
if refused == 0 then
  out[1], out[2] = 1, output
  for i = 1, n do
    local add = 1
    if counts[i] ~= 0 then
      add = 0
      if counts[i] % 2 == 1 then
        add = add + input
      end
      if counts[i] >= 2 then
        add = add + output
      end
    end
    used[i] = redis.call('INCRBY', keys[i], add)
    redis.call('PEXPIRE', keys[i], ends[i] - now + 600000)
  end
else
  out[2] = refused
end
for i = 1, n do
  out[#out + 1] = starts[i]
  out[#out + 1] = ends[i]
  out[#out + 1] = used[i]
end
return out
