-- A GetItem of one cached item, as an SDK sends it (the proxy re-signs upstream requests, and
-- hits never reach the upstream, so the signature is a well-formed placeholder).
wrk.method = "POST"
wrk.body = '{"TableName":"bench","Key":{"pk":{"S":"k"}}}'
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.GetItem"
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"
