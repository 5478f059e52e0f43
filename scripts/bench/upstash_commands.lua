-- The scenarios of scripts/bench-upstash.sh over /_upstash, chosen by KV_SCENARIO.
-- Small collections: KV_SMALL keys of each type (small:h:i, small:s:i, small:z:i, small:l:i)
-- with 10 members each. Big ones: big:h, big:s, big:z, big:l with KV_BIG members each
-- (fields and members f0…, m0…; scores their number).
dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
-- Scripts: KV_SHA_GET (`return redis.call('GET', KEYS[1])`) and KV_SHA_RATELIMIT
-- (@upstash/ratelimit's fixed-window limit(), as the library calls it: 10 per 60 s for one of
-- 1000 identifiers, its key prefix:identifier:bucket).
local scenario = os.getenv("KV_SCENARIO")
local sha_get = os.getenv("KV_SHA_GET") or ""
local sha_ratelimit = os.getenv("KV_SHA_RATELIMIT") or ""
local bucket = tostring(math.floor(os.time() / 60))
local small = tonumber(os.getenv("KV_SMALL") or "10000")
local big = tonumber(os.getenv("KV_BIG") or "1000000")
local flip = 0

local function s(i) return tostring(i) end
local function cmd(...) return "[\"" .. table.concat({...}, "\",\"") .. "\"]" end
local function any(n) return math.random(0, n - 1) end

local make = {
  set = function() return upstash_set_command() end,
  get = function() return upstash_get_command() end,
  incr = function() return cmd("incr", "counter:" .. any(1000)) end,
  evalsha_get = function() return cmd("evalsha", sha_get, "1", "bench:" .. any(keys)) end,
  ratelimit_fixed = function()
    return cmd("evalsha", sha_ratelimit, "1", "ratelimit:user" .. any(1000) .. ":" .. bucket, "10", "60000", "1")
  end,
  hset_small = function() return cmd("hset", "small:h:" .. any(small), "f" .. any(10), "v" .. any(100)) end,
  sadd_small = function() return cmd("sadd", "small:s:" .. any(small), "m" .. any(20)) end,
  zadd_small = function() return cmd("zadd", "small:z:" .. any(small), s(any(1000)), "m" .. any(10)) end,
  lpush_rpop_small = function()
    flip = 1 - flip
    local key = "small:l:" .. any(small)
    if flip == 1 then return cmd("lpush", key, "job") end
    return cmd("rpop", key)
  end,
  hget_small = function() return cmd("hget", "small:h:" .. any(small), "f" .. any(10)) end,
  sismember_small = function() return cmd("sismember", "small:s:" .. any(small), "m" .. any(20)) end,
  zscore_small = function() return cmd("zscore", "small:z:" .. any(small), "m" .. any(10)) end,
  hset_big = function() return cmd("hset", "big:h", "f" .. any(big), "v" .. any(100)) end,
  sadd_big = function() return cmd("sadd", "big:s", "m" .. any(big)) end,
  zadd_big = function() return cmd("zadd", "big:z", s(any(big)), "m" .. any(big)) end,
  lpush_rpop_big = function()
    flip = 1 - flip
    if flip == 1 then return cmd("lpush", "big:l", "job") end
    return cmd("rpop", "big:l")
  end,
  hget_big = function() return cmd("hget", "big:h", "f" .. any(big)) end,
  sismember_big = function() return cmd("sismember", "big:s", "m" .. any(big)) end,
  zscore_big = function() return cmd("zscore", "big:z", "m" .. any(big)) end,
  zrank_big = function() return cmd("zrank", "big:z", "m" .. any(big)) end,
  zrange_mid = function()
    local at = math.floor(big / 2) + any(1000)
    return cmd("zrange", "big:z", s(at), s(at + 9))
  end,
  lrange_mid = function()
    local at = math.floor(big / 2) + any(1000)
    return cmd("lrange", "big:l", s(at), s(at + 9))
  end,
}

local chosen = make[scenario]
if not chosen then error("unknown KV_SCENARIO " .. tostring(scenario)) end
request = function() return upstash(chosen()) end
