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

-- The Upstash-compatible endpoint (/_upstash), as @upstash/redis sends commands: the same
-- keys, and for SET the same value and TTL as set_key.
upstash_value = '{\\"name\\":\\"Emeka\\",\\"role\\":\\"Engineer\\",\\"skills\\":[\\"Python\\",\\"Django\\"]}'
upstash_headers = {["Content-Type"] = "application/json", ["Upstash-Encoding"] = "base64"}

function upstash_get_command()
  return '["get","bench:' .. math.random(0, keys - 1) .. '"]'
end

function upstash_set_command()
  return '["set","bench:' .. math.random(0, keys - 1) .. '","' .. upstash_value .. '","ex",3600]'
end

function upstash(body)
  return wrk.format("POST", "/_upstash", upstash_headers, body)
end

-- A pipeline of n commands made by make().
function upstash_pipeline(n, make)
  local commands = {}
  for i = 1, n do commands[i] = make() end
  return wrk.format("POST", "/_upstash/pipeline", upstash_headers, "[" .. table.concat(commands, ",") .. "]")
end
