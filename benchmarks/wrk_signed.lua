-- wrk script: POST pre-signed webhooks, each with its own webhook-id, and count answers.
--   wrk -t1 -c32 -d4s -s wrk_signed.lua http://127.0.0.1:PORT/ -- requests.tsv
-- requests.tsv (written by bench.py just before the run, fresh timestamps) has one line per
-- request: "<webhook-id>\t<webhook-timestamp>\t<webhook-signature>\t<order number>"; the body is
-- BODY_FMT with the order number, byte for byte what bench.py signed. Lines are read in order
-- and never reused: when the file runs out the thread stops (exhausted=1), so no request id is
-- ever sent twice. Only 2xx answers count; a 2xx whose body says "duplicate" is counted apart.
local BODY_FMT = '{"event":"payment.completed","order_id":"ORD-%08d","customer":"Jane D.",'
  .. '"email":"jane.d@example.com","item":"Blue T-Shirt","sku":"TS-BLU-M","quantity":1,'
  .. '"amount":25.0,"currency":"USD","shipping":{"name":"Jane D.","city":"Lisbon",'
  .. '"postcode":"1100-148","country":"PT"},"note":"Leave at the door, please.",'
  .. '"time":"2026-04-14T08:30:00Z"}'

local threads = {}
local file
local fmt = string.format
ok, other, dup, exhausted, sent = 0, 0, 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  file = assert(io.open(args[1], "r"))
end

function request()
  local line = file:read("*l")
  if not line then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/exhausted")
  end
  local id, ts, sig, n = line:match("^(%S+)\t(%S+)\t(%S+)\t(%d+)$")
  sent = sent + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["webhook-id"] = id,
    ["webhook-timestamp"] = ts,
    ["webhook-signature"] = sig,
  }, fmt(BODY_FMT, tonumber(n)))
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if body:find("duplicate", 1, true) then
      dup = dup + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local o, x, d, e, s = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    x = x + t:get("other")
    d = d + t:get("dup")
    e = e + t:get("exhausted")
    s = s + t:get("sent")
  end
  local errs = summary.errors
  io.write(fmt("WRKRESULT ok=%d other=%d dup=%d exhausted=%d sent=%d duration_us=%d requests=%d "
    .. "errors=%d p50_us=%d p99_us=%d\n", o, x, d, e, s, summary.duration, summary.requests,
    errs.connect + errs.read + errs.write + errs.timeout,
    latency:percentile(50), latency:percentile(99)))
end
