-- wrk script for `make bench`; arguments after `--` are key=value words:
--   mode=static             the same GET for every request (wrk's fast path)
--   mode=ranges size=N length=L seed=S
--                           every request asks for a random `Range: bytes=a-(a+L-1)` of a
--                           file of N bytes
--   mode=put size=N tag=T   every request PUTs N bytes (bench.clients.put_body) to a new
--                           path: the URL's path, then "T-<thread>-<n>"
--   mode=keys count=N seed=S
--                           every request GETs a random key among N: the URL's path, then
--                           "keys/<i % 256 as 2 hex>/<i as 6 digits>.bin" (bench/keys.py)
--   check=1                 count every response's status (slower: wrk then hands each
--                           response to Lua); the harness uses it in the untimed warm-up
-- At the end one line `WRKJSON {...}` gives requests, bytes, duration, errors, latency
-- percentiles and (with check=1) the count of each status.

local opts = {
  mode = "static", size = 0, length = 65536, seed = 1, check = "0", tag = "p", count = 1,
}
statuses = {} -- global: the main state reads it with thread:get
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
  if opts.mode == "put" then
    local line = "artifactd bench upload\n"
    put_body = string.rep(line, math.floor(opts.size / #line) + 1):sub(1, opts.size)
    put_count = 0
    request = put_request
  elseif opts.mode == "keys" then
    request = keys_request
  elseif opts.mode ~= "ranges" then
    request = nil
  end
  if tostring(opts.check) ~= "1" then
    response = nil
  end
  math.randomseed(tonumber(opts.seed) * 1000 + (thread_index or 0))
end

function request()
  local first = math.random(0, opts.size - opts.length)
  local range = "bytes=" .. string.format("%d-%d", first, first + opts.length - 1)
  return wrk.format(nil, nil, { Range = range })
end

function put_request()
  put_count = put_count + 1
  local path = string.format("%s%s-%d-%d", wrk.path, opts.tag, thread_index or 0, put_count)
  return wrk.format("PUT", path, nil, put_body)
end

function keys_request()
  local i = math.random(0, opts.count - 1)
  return wrk.format("GET", string.format("%skeys/%02x/%06d.bin", wrk.path, i % 256, i))
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
