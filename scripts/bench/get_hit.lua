dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function() return get_hit() end
