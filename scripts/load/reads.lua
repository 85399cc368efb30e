-- The read mix of the load benchmark, chosen uniformly:
-- a story by id, a feed, a page of published stories, the featured list.
-- WRITE_PCT of requests are PATCH /stories/{id} title writes instead, and
-- VIEW_PCT of them POST /stories/{id}/views.
local stories = tonumber(os.getenv("LOAD_STORIES") or "100000")
local profiles = tonumber(os.getenv("LOAD_PROFILES") or "10000")
local write_pct = tonumber(os.getenv("WRITE_PCT") or "0")
local view_pct = tonumber(os.getenv("VIEW_PCT") or "0")
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
end

request = function()
  local dice = math.random(100)
  if dice <= write_pct then
    local body = '{"title":"load ' .. math.random(1000000) .. '"}'
    return wrk.format("PATCH", "/stories/" .. math.random(stories), {["Content-Type"] = "application/json"}, body)
  end
  if dice <= write_pct + view_pct then
    return wrk.format("POST", "/stories/" .. math.random(stories) .. "/views", {["Content-Type"] = "application/json"}, "{}")
  end
  local r = math.random(4)
  local path
  if r == 1 then
    path = "/stories/" .. math.random(stories)
  elseif r == 2 then
    path = "/profiles/" .. math.random(profiles) .. "/feed?limit=20"
  elseif r == 3 then
    path = "/stories?published=true&limit=20&offset=" .. (math.random(0, 99) * 20)
  else
    path = "/stories/featured"
  end
  return wrk.format("GET", path)
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT requests=%d duration_s=%.1f rps=%.0f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f errors=%d non2xx=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    errors, summary.errors.status))
end
