dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function() return set_key() end
