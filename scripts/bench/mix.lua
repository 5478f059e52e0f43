dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
request = function()
  if math.random(1, 10) == 1 then return set_key() end
  return get_hit()
end
