dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function() return upstash(upstash_set_command()) end
