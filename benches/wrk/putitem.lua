-- PutItem of one ~400-byte item, over a thousand keys per connection: the write path, which
-- always goes upstream. The signature is a well-formed placeholder (the proxy re-signs; the
-- emulator checks only that one is there).
local value = string.rep("x", 400)
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.PutItem"
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"

request = function()
    n = (n + 1) % 1000
    local body = '{"TableName":"bench","Item":{"pk":{"S":"w' .. n .. '"},"v":{"S":"' .. value .. '"}}}'
    return wrk.format(nil, nil, nil, body)
end
