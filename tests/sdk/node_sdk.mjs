// Sends events to a running Warren with the official posthog-node SDK.
// Usage: node node_sdk.mjs URL TOKEN. Prints one JSON line per event sent.
import { randomUUID } from 'node:crypto';
import { PostHog } from 'posthog-node';

const [url, token] = process.argv.slice(2);
const expected = [];
const failures = [];
const base = new Date(Math.floor(Date.now() / 1000) * 1000 - 10 * 60 * 1000);

function client(options) {
  const c = new PostHog(token, { host: url, flushAt: 20, flushInterval: 0, fetchRetryCount: 0, ...options });
  c.on('error', (error) => failures.push(String(error)));
  return c;
}

// Default client: gzip-compressed batches.
const gzipped = client({});
// And one that sends plain JSON.
const plain = client({ disableCompression: true });

for (const [name, c] of [['gzip', gzipped], ['plain', plain]]) {
  for (let i = 0; i < 30; i++) {
    const uuid = randomUUID();
    const timestamp = new Date(base.getTime() + i * 1000);
    const distinctId = `node-${name}-${i % 4}`;
    const properties = { i, client: name, list: [1, 'two', { three: 3 }] };
    c.capture({ distinctId, event: 'node_event', properties, timestamp, uuid });
    expected.push({ uuid, event: 'node_event', distinct_id: distinctId, timestamp: timestamp.toISOString(), fields: { properties } });
  }
}
gzipped.identify({ distinctId: 'node-user', properties: { email: 'node@example.com' } });
expected.push({ event: '$identify', distinct_id: 'node-user', fields: { properties: { $set: { email: 'node@example.com' } } } });
gzipped.alias({ distinctId: 'node-user', alias: 'node-anon' });
expected.push({ event: '$create_alias', distinct_id: 'node-user', fields: { properties: { alias: 'node-anon' } } });
gzipped.groupIdentify({ groupType: 'company', groupKey: 'initech', properties: { size: 50 }, distinctId: 'node-user' });
expected.push({ event: '$groupidentify', distinct_id: 'node-user', fields: { properties: { $group_type: 'company', $group_key: 'initech', $group_set: { size: 50 } } } });

await gzipped.shutdown();
await plain.shutdown();

for (const item of expected) console.log(JSON.stringify(item));
if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
