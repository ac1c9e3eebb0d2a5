-- HTTP/1.1 pipelining for wrk: every write carries DEPTH requests back to back.
--
-- wrk asks request() once at start-up and counts the requests in the returned
-- bytes; it then expects that many responses per write before writing again,
-- so the server always has DEPTH requests queued on each connection.
-- The depth can be changed with `wrk ... -s pipeline.lua <url> -- <depth>`.

local depth = 16
local batch

function init(args)
  if args[1] ~= nil then
    depth = tonumber(args[1])
  end
  local requests = {}
  for i = 1, depth do
    -- wrk.format() with no arguments builds a GET for the URL's path with
    -- wrk's default headers (Host included): the same request wrk sends
    -- when no script is given.
    requests[i] = wrk.format()
  end
  batch = table.concat(requests)
end

function request()
  return batch
end
