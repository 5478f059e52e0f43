-- As set.lua, each request with an Idempotency-Key of its own (thread id and a count), so
-- every one is a first request: what the stored response costs a write.
dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
sent = 0
request = function()
  sent = sent + 1
  return wrk.format("POST", "/bench:" .. math.random(0, keys - 1), {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-" .. (id or 0) .. "-" .. os.time() .. "-" .. sent,
  }, seed_body)
end
