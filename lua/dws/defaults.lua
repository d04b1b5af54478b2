-- Every default and fixed limit of lua-dws, in one place. client.lua, both transports,
-- notification.lua and journal.lua read them from here, and dws.curl (C) is handed them as
-- required arguments, so no other file holds a number of its own. docs/calls.md "Client options" is
-- their documentation.
local M = {}

-- dws.client's options, as client.new fills in what the caller left out.
M.options = {
  key_version = "1",
  request_time = "millis",
  timeout = 15,                   -- seconds, per attempt, connect to last byte
  connect_timeout = 5,            -- seconds
  max_retries = 2,                -- further attempts after a retryable failure
  retry_base_delay = 0.5,         -- seconds; the backoff doubles from here, up to max_retry_delay
  max_response_bytes = 1024 * 1024,
  allow_insecure_http = false,
  log_level = "debug",            -- every event reaches the logger
  notification_tolerance = 300,   -- seconds either way of the local clock
  response_time_tolerance = 300,  -- seconds either way of the local clock
}

-- The cap on one backoff delay (seconds): past a few attempts, waiting longer finds nothing new.
M.max_retry_delay = 5

-- Notification de-dup: DWS re-sends for about 24 hours, so a requestId is remembered a while
-- longer than that; one delivery holds its claim while the handler runs, and a crash mid-handler
-- frees the requestId after claim_ttl, when DWS's next delivery runs the handler.
M.notification_seen_ttl = 2 * 24 * 3600
M.notification_claim_ttl = 60

-- How long binding-journal records in a final state are kept (seconds).
M.journal_retention = 90 * 24 * 3600

-- client:wait_binding: how long it waits by default, how often it reads the journal, and the
-- longest wait it takes (seconds).
M.wait_binding_timeout = 30
M.wait_binding_interval = 0.25
M.wait_binding_max = 86400

-- client:run_all: transfers in flight at once (dws.multi; curl.multi's slots).
M.concurrency = 32

-- transport.ngx: the cosocket keep-alive pool per worker, and how long an idle connection stays.
M.pool_size = 32
M.idle_timeout = 60

return M
