// Evaluates feature flags against a running Warren with the official posthog-node SDK.
// Usage: node node_flags.mjs '<json>' (or the JSON on stdin), where the JSON is
// {"host", "token", "personal_api_key", "distinct_ids", "person_properties",
//  "groups"?, "group_properties"?, "flags"}.
//
// Two clients: "remote" has no secret key, so every call is a POST /flags/?v=2;
// "local" has the secret key, loads GET /flags/definitions once and evaluates with
// onlyEvaluateLocally: true. Prints one JSON object with each client's getFeatureFlag /
// getFeatureFlagPayload / getAllFlags results, the number of definitions the local client
// loaded, and what the SDK reported. Exits non-zero if the SDK reported any error.
import { readFileSync } from 'node:fs';
import { PostHog } from 'posthog-node';

// Messages the SDK prints about the flags themselves rather than about a failure.
const BENIGN = ['is deprecated', 'experience continuity enabled', 'use something local evaluation'];

const config = JSON.parse(process.argv[2] ?? readFileSync(0, 'utf8'));
const errors = [];
const warnings = [];

// The SDK prints some failures (quota limits, errorsWhileComputingFlags) instead of emitting
// 'error'. Its loggers bind console methods at construction, so patch them first.
const text = (args) => args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? String(a) : JSON.stringify(a))).join(' ');
console.error = (...args) => errors.push(text(args));
console.log = console.info = console.debug = (...args) => process.stderr.write(`${text(args)}\n`);
console.warn = (...args) => {
  const message = text(args);
  if (!BENIGN.some((b) => message.includes(b))) errors.push(message);
  else if (!message.includes('is deprecated')) warnings.push(message);
};

let definitionsLoaded = null;

function client(options) {
  const c = new PostHog(config.token, {
    host: config.host,
    disableGeoip: true,
    sendFeatureFlagEvent: false,
    fetchRetryCount: 0,
    featureFlagsRequestTimeoutMs: 3000,
    featureFlagsRequestMaxRetries: 0,
    requestTimeout: 5000,
    featureFlagsPollingInterval: 3_600_000,
    ...options,
  });
  c.on('error', (error) => errors.push(String(error)));
  c.on('localEvaluationFlagsLoaded', (count) => (definitionsLoaded = count));
  return c;
}

function context(distinctId) {
  const groups = config.groups?.[distinctId] ?? {};
  const groupProperties = Object.fromEntries(
    Object.entries(groups).map(([type, key]) => [type, config.group_properties?.[type]?.[String(key)] ?? {}]),
  );
  return { personProperties: config.person_properties?.[distinctId] ?? {}, groups, groupProperties };
}

// JSON.stringify drops undefined members, so report "no value" as null.
const orNull = (value) => (value === undefined ? null : value);

async function evaluate(c, onlyEvaluateLocally) {
  const values = {};
  const payloads = {};
  const all = {};
  for (const distinctId of config.distinct_ids) {
    const options = { ...context(distinctId), onlyEvaluateLocally, sendFeatureFlagEvents: false };
    values[distinctId] = {};
    payloads[distinctId] = {};
    for (const key of config.flags) {
      try {
        values[distinctId][key] = orNull(await c.getFeatureFlag(key, distinctId, options));
        payloads[distinctId][key] = orNull(await c.getFeatureFlagPayload(key, distinctId, undefined, options));
      } catch (error) {
        errors.push(`${key} for ${distinctId}: ${error?.stack ?? error}`);
        values[distinctId][key] = payloads[distinctId][key] = null;
      }
    }
    all[distinctId] = await c.getAllFlags(distinctId, options);
  }
  return [values, payloads, all];
}

const remote = client({});
const local = client({ secretKey: config.personal_api_key });
// The constructor already started loading; this waits for that request (or makes one).
await local.reloadFeatureFlags();
if (definitionsLoaded === null) {
  errors.push('local client did not load flag definitions (non-200 response or network failure)');
}

const out = { definitions_loaded: definitionsLoaded ?? 0 };
[out.remote, out.remote_payloads, out.remote_all] = await evaluate(remote, false);
[out.local, out.local_payloads, out.local_all] = await evaluate(local, true);
await remote.shutdown();
await local.shutdown();
out.errors = errors;
out.warnings = warnings;

process.stdout.write(`${JSON.stringify(out)}\n`);
if (errors.length) {
  process.stderr.write(`posthog-node reported errors:\n${errors.join('\n')}\n`);
  process.exit(1);
}
