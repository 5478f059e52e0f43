dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function() return wrk.format("GET", "/missing:" .. math.random(0, 1000000000)) end
