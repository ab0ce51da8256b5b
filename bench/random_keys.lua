-- wrk script for the random-keys workload of `make bench`: every request is a GET of a
-- random key among `count` (bench/keys.py names them), on keep-alive connections.
-- Arguments after `--` are key=value words: count=N prefix=/files/ seed=S method=GET
-- check=1 (count every status, as bench/wrk.lua does). Ends with the same WRKJSON line.

local opts = { count = 1, prefix = "/files/", seed = 1, check = "0", method = "GET" }
statuses = {}
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_index", counter)
  table.insert(threads, thread)
end

function init(args)
  for _, word in ipairs(args) do
    local key, value = word:match("^(%w+)=(.*)$")
    if key then
      opts[key] = tonumber(value) or value
    end
  end
  if tostring(opts.check) ~= "1" then
    response = nil
  end
  math.randomseed(tonumber(opts.seed) * 1000 + (thread_index or 0))
end

function request()
  local i = math.random(0, opts.count - 1)
  local path = string.format("%skeys/%02x/%06d.bin", opts.prefix, i % 256, i)
  return wrk.format(opts.method, path)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses")
    if seen then
      for status, n in pairs(seen) do
        counts[status] = (counts[status] or 0) + n
      end
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"bytes":%d,"duration_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"statuses":{%s}}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, table.concat(parts, ",")))
end
