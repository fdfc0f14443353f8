// Sends events the way posthog-js does in a browser, built with the same
// encoders it uses (lz-string and fflate's gzip), on each transport:
// form-encoded lz64, gzip-js, base64 form, legacy GET with `data=`, and
// sendBeacon. Usage: node js_encoders.mjs URL TOKEN.
// Prints one JSON line per event; exits non-zero on an unexpected status.
import { randomUUID } from 'node:crypto';
import { gzipSync, strToU8 } from 'fflate';
import LZString from 'lz-string';

const [url, token] = process.argv.slice(2);
const expected = [];
const failures = [];
const now = Date.now();

function events(transport, count) {
  return Array.from({ length: count }, (_, i) => {
    const uuid = randomUUID();
    const timestamp = new Date(now - 60_000 + i).toISOString();
    const properties = {
      token,
      distinct_id: `js-${transport}-${i}`,
      $lib: 'web',
      $current_url: `https://example.com/${transport}/${i}`,
      text: 'ünïcödé ✓ "quoted" + plus & amp',
    };
    const event = { uuid, event: '$pageview', properties, timestamp };
    expected.push({ uuid, event: '$pageview', distinct_id: properties.distinct_id, timestamp, fields: { properties } });
    return event;
  });
}

async function send(name, path, init, wantStatus = 200) {
  const response = await fetch(url + path, init);
  if (response.status !== wantStatus) {
    failures.push(`${name}: status ${response.status}, wanted ${wantStatus}: ${await response.text()}`);
  }
}

const form = { 'Content-Type': 'application/x-www-form-urlencoded' };

let json = JSON.stringify(events('lz64', 5));
await send('lz64', `/e/?compression=lz64&ver=1.200.0&_=${now}`, {
  method: 'POST',
  headers: form,
  body: `data=${encodeURIComponent(LZString.compressToBase64(json))}&compression=lz64`,
});

json = JSON.stringify(events('gzip', 5));
await send('gzip-js', `/e/?compression=gzip-js&ver=1.200.0&_=${now}`, {
  method: 'POST',
  headers: { 'Content-Type': 'text/plain' },
  body: gzipSync(strToU8(json), { mtime: 0 }),
});

json = JSON.stringify(events('base64', 3));
await send('base64 form', `/e/?_=${now}`, {
  method: 'POST',
  headers: form,
  body: `data=${encodeURIComponent(Buffer.from(json).toString('base64'))}`,
});

json = JSON.stringify(events('get', 2));
await send('GET data=', `/e/?data=${encodeURIComponent(Buffer.from(json).toString('base64'))}&ip=1&_=${now}`, {
  method: 'GET',
});

json = JSON.stringify(events('beacon', 2));
await send('beacon', `/e/?compression=gzip-js&beacon=1&_=${now}`, {
  method: 'POST',
  body: gzipSync(strToU8(json)),
}, 204);

json = JSON.stringify(events('batch-lz', 4));
await send('lz64 on /batch', `/batch/?compression=lz64`, {
  method: 'POST',
  headers: form,
  body: `data=${encodeURIComponent(LZString.compressToBase64(json))}`,
});

for (const item of expected) console.log(JSON.stringify(item));
if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
