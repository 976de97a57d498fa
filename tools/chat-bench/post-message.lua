-- wrk script: POST /chat/Message as the user of env TOKEN, spread over that user's dialogs
-- d…02 .. d…(DIALOGS) (the seed's naming), so creates contend as real traffic would rather than
-- all queueing on one dialog's row lock.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["CB-Token"] = os.getenv("TOKEN")
local dialogs = tonumber(os.getenv("DIALOGS") or "200")
local n = 0
request = function()
  n = n + 1
  local dialog = string.format("d%023x", 2 + (n % (dialogs - 1)))
  return wrk.format(nil, nil, nil, '{"chat_dialog_id":"' .. dialog .. '","message":"bench message ' .. n .. '","markable":1}')
end
