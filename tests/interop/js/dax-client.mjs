// The JavaScript DAX client (@amazon-dax-sdk/client-dax, pinned in package-lock.json) through
// dynamo-cache's DAX listener, checked against the AWS SDK over the proxy's HTTP listener.
//
//   node dax-client.mjs HTTP_URL DAX_URL
//
// Exits non-zero on the first check that fails.
import assert from 'node:assert/strict';
import { Dax } from '@amazon-dax-sdk/client-dax';
import { DynamoDB } from '@aws-sdk/client-dynamodb';

const [httpUrl, daxUrl] = process.argv.slice(2);
const region = 'us-east-1';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const http = new DynamoDB({ region, endpoint: httpUrl, credentials });
const dax = new Dax({ endpoints: [daxUrl], region, credentials });
const TABLE = process.env.TABLE ?? 'js_items';
const key = (pk, sk = '1') => ({ pk: { S: pk }, sk: { N: sk } });

await http.createTable({
  TableName: TABLE, BillingMode: 'PAY_PER_REQUEST',
  AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' },
    { AttributeName: 'sk', AttributeType: 'N' }],
  KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
});

// Every attribute type, read back through both protocols.
const item = {
  ...key('types'),
  s: { S: 'héllo' }, b: { B: Buffer.from([0, 1, 255]) }, t: { BOOL: true }, nul: { NULL: true },
  ss: { SS: ['a', 'b'] }, ns: { NS: ['1', '-2.5'] }, bs: { BS: [Buffer.from([1])] },
  l: { L: [{ S: 'x' }, { N: '2' }] }, m: { M: { inner: { M: { deep: { S: 'z' } } } } },
  n: { N: '-98765432109876.125' },
};
await dax.putItem({ TableName: TABLE, Item: item });
const viaDax = (await dax.getItem({ TableName: TABLE, Key: key('types') })).Item;
const viaHttp = (await http.getItem({ TableName: TABLE, Key: key('types') })).Item;
for (const name of ['s', 't', 'nul', 'l', 'm', 'n']) {
  assert.deepEqual(viaDax[name], item[name], name);
  assert.deepEqual(viaHttp[name], item[name], name);
}
assert.deepEqual(Buffer.from(viaDax.b.B), Buffer.from(item.b.B));
assert.deepEqual([...viaDax.ss.SS].sort(), ['a', 'b']);

// Conditions, updates and return values.
const updated = await dax.updateItem({
  TableName: TABLE, Key: key('types'), ReturnValues: 'UPDATED_NEW',
  UpdateExpression: 'SET #s = :s, counter = if_not_exists(counter, :zero) + :one REMOVE nul',
  ConditionExpression: 'attribute_exists(pk) AND t = :t',
  ExpressionAttributeNames: { '#s': 's' },
  ExpressionAttributeValues: { ':s': { S: 'updated' }, ':zero': { N: '0' }, ':one': { N: '1' }, ':t': { BOOL: true } },
});
assert.deepEqual(updated.Attributes, { s: { S: 'updated' }, counter: { N: '1' } });
assert.equal((await http.getItem({ TableName: TABLE, Key: key('types') })).Item.s.S, 'updated');
await assert.rejects(
  dax.putItem({ TableName: TABLE, Item: key('types'), ConditionExpression: 'attribute_not_exists(pk)' }),
  (err) => err.code === 'ConditionalCheckFailedException');
await assert.rejects(
  dax.getItem({ TableName: 'js_no_such_table', Key: key('x') }),
  (err) => err.code === 'ResourceNotFoundException');

// Written over HTTP, read over DAX at once (the shared cache), and back.
await http.putItem({ TableName: TABLE, Item: { ...key('cross'), v: { S: 'http' } } });
assert.equal((await dax.getItem({ TableName: TABLE, Key: key('cross') })).Item.v.S, 'http');
await dax.putItem({ TableName: TABLE, Item: { ...key('cross'), v: { S: 'dax' } } });
assert.equal((await http.getItem({ TableName: TABLE, Key: key('cross') })).Item.v.S, 'dax');

// Query pages.
for (let i = 0; i < 7; i++) {
  await dax.putItem({ TableName: TABLE, Item: { ...key('page', String(i)), i: { N: String(i) } } });
}
const seen = [];
let start;
do {
  const page = await dax.query({
    TableName: TABLE, KeyConditionExpression: 'pk = :p', Limit: 3,
    ExpressionAttributeValues: { ':p': { S: 'page' } }, ExclusiveStartKey: start,
  });
  seen.push(...page.Items.map((it) => it.i.N));
  start = page.LastEvaluatedKey;
} while (start);
assert.deepEqual(seen, ['0', '1', '2', '3', '4', '5', '6']);
const scanned = await dax.scan({ TableName: TABLE, FilterExpression: 'pk = :p',
  ExpressionAttributeValues: { ':p': { S: 'page' } } });
assert.equal(scanned.Count, 7);

// Batches and transactions.
await dax.batchWriteItem({ RequestItems: { [TABLE]: [
  { PutRequest: { Item: { ...key('batch', '1'), v: { S: 'one' } } } },
  { PutRequest: { Item: { ...key('batch', '2'), v: { S: 'two' } } } },
  { DeleteRequest: { Key: key('page', '0') } },
] } });
const batch = await dax.batchGetItem({ RequestItems: { [TABLE]: { Keys: [key('batch', '1'), key('batch', '2'), key('page', '0')] } } });
assert.deepEqual(batch.Responses[TABLE].map((it) => it.v.S).sort(), ['one', 'two']);
await dax.transactWriteItems({ TransactItems: [
  { Put: { TableName: TABLE, Item: { ...key('tx'), v: { S: 'tx' } } } },
  { Update: { TableName: TABLE, Key: key('batch', '1'), UpdateExpression: 'SET v = :v',
    ExpressionAttributeValues: { ':v': { S: 'uno' } } } },
] });
const got = await dax.transactGetItems({ TransactItems: [
  { Get: { TableName: TABLE, Key: key('tx') } }, { Get: { TableName: TABLE, Key: key('batch', '1') } }] });
assert.deepEqual(got.Responses.map((r) => r.Item.v.S), ['tx', 'uno']);
await assert.rejects(
  dax.transactWriteItems({ TransactItems: [
    { ConditionCheck: { TableName: TABLE, Key: key('tx'), ConditionExpression: 'attribute_not_exists(pk)' } },
    { Put: { TableName: TABLE, Item: key('never') } }] }),
  (err) => err.code === 'TransactionCanceledException');

dax.shutdown();
console.log('ok');
process.exit(0);
