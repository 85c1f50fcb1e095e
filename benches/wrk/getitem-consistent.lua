-- A strongly consistent GetItem of one item: never answered from memory, so every request is
-- forwarded (what forwarding adds over calling the upstream directly).
wrk.method = "POST"
wrk.body = '{"TableName":"bench","Key":{"pk":{"S":"k"}},"ConsistentRead":true}'
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.GetItem"
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"
