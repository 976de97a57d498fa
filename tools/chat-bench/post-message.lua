-- wrk script: POST /chat/Message to the dialog in env DIALOG, as the user of env TOKEN.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["CB-Token"] = os.getenv("TOKEN")
local dialog = os.getenv("DIALOG")
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"chat_dialog_id":"' .. dialog .. '","message":"bench message ' .. n .. '","markable":1}')
end
