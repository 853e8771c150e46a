-- wrk script for scripts/bench B3: every request GETs a path picked at random
-- from the file named after `--` (one URL path a line).
--   wrk -t2 -c64 -d10s -s scripts/bench.d/random.lua http://127.0.0.1:PORT -- PATHS
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("id", threads)
end

local paths = {}

function init(args)
   for line in io.lines(args[1]) do
      paths[#paths + 1] = line
   end
   math.randomseed(os.time() * 100 + (id or 0))
end

function request()
   return wrk.format("GET", paths[math.random(#paths)])
end
