dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function() return wrk.format("POST", "/hot:" .. math.random(0, 99) .. "/incr") end
