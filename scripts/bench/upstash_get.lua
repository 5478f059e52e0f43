dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function() return upstash(upstash_get_command()) end
