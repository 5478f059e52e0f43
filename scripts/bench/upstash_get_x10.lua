-- One request: a /pipeline of 10 GET commands.
dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function() return upstash_pipeline(10, upstash_get_command) end
