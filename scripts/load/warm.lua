-- Warms the cache for the read mix of reads.lua: every key it can ask for
-- (each story, each profile's feed, each published page, the featured
-- list) read once, split between wrk's threads; each thread stops when its
-- share is done (wrk itself still waits out its -d: loadtest.sh stops it
-- once /stats shows every key read).
local stories = tonumber(os.getenv("LOAD_STORIES") or "100000")
local profiles = tonumber(os.getenv("LOAD_PROFILES") or "10000")
local total = stories + profiles + 100 + 1
local threads = 0

function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

function init(args)
  step = tonumber(os.getenv("WARM_THREADS") or "2")
  next_key = index
end

local function path(k)
  if k < stories then return "/stories/" .. (k + 1) end
  k = k - stories
  if k < profiles then return "/profiles/" .. (k + 1) .. "/feed?limit=20" end
  k = k - profiles
  if k < 100 then return "/stories?published=true&limit=20&offset=" .. (k * 20) end
  return "/stories/featured"
end

request = function()
  local k = next_key
  next_key = next_key + step
  if k >= total then k = total - 1 end
  return wrk.format("GET", path(k))
end

response = function(status, headers, body)
  if next_key >= total + 64 * step then wrk.thread:stop() end
end
