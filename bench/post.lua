-- SPDX-License-Identifier: Apache-2.0
-- wrk script for bench/run.sh: every request is a POST of the same JSON body, read once from
-- the file named by BENCH_BODY_FILE (a single-row predict body built from the model manifest).
local path = os.getenv("BENCH_BODY_FILE")
if path == nil then
  error("BENCH_BODY_FILE is not set")
end
local fh = assert(io.open(path, "rb"))
local body = fh:read("*a")
fh:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
