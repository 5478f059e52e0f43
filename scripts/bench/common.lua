-- Shared by the kvstore wrk scenarios: KV_KEYS keys named bench:0 .. bench:N-1 are loaded.
keys = tonumber(os.getenv("KV_KEYS") or "10000")
seed_body = '{"value": {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}, "ttl": 3600}'
counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(os.time() + (id or 0) * 7919)
end

function get_hit()
  return wrk.format("GET", "/bench:" .. math.random(0, keys - 1))
end

function set_key()
  return wrk.format("POST", "/bench:" .. math.random(0, keys - 1), {["Content-Type"] = "application/json"}, seed_body)
end
