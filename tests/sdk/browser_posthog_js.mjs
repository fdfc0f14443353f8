// posthog-js, as npm ships it, in Debian's Chromium on a page of another
// origin, sending to Warren with its defaults: it must get its remote
// configuration, load its flags, autocapture a click and send its events,
// record the session (a DOM change included) to `/s/`, with no request
// refused or blocked. Prints one line per check, then the events it sent as
// JSON lines (`{"event": …, "distinct_id": …}`) and the recorded session
// (`{"recording": …}`) for the caller to find in Warren; exits non-zero on
// the first thing that is not as expected.
//
//   node browser_posthog_js.mjs <warren url> <project token> <flag key> [gzip|uncompressed|xhr]
//
// The project must record sessions (`session_recording_opt_in`). The flag
// must be on for everyone; `checkout-variant`, if the project
// has it, must give everyone variant `test` with payload {"price": 9}.
// `gzip` (the default) expects the events gzipped, as the remote
// configuration asks; `uncompressed` sets `disable_compression`; `xhr`
// sends with XMLHttpRequest (`api_transport: "XHR"`) instead of fetch.
import { createServer } from "node:http";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { chromium } from "playwright-core";

const [warren, token, flag, mode = "gzip"] = process.argv.slice(2);
if (!flag) {
  console.error("usage: browser_posthog_js.mjs <warren url> <project token> <flag key>");
  process.exit(2);
}
const TIMEOUT = 30_000;
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const options = {
  api_host: warren,
  ...(mode === "uncompressed" ? { disable_compression: true } : {}),
  ...(mode === "xhr" ? { api_transport: "XHR" } : {}),
};

// The shop: its own origin (another port), serving posthog-js's snippet build.
const bundle = readFileSync(new URL("./node_modules/posthog-js/dist/array.full.js", import.meta.url));
const page_html = `<!doctype html><html><head><title>Shop</title>
<script src="/posthog.js"></script>
<script>posthog.init(${JSON.stringify(token)}, ${JSON.stringify(options)});</script>
</head><body><h1>Shop</h1><button id="buy" class="buy-button">Buy now</button>
<button id="reveal">Show the receipt</button>
<script>document.getElementById("reveal").addEventListener("click", () => {
  const receipt = document.createElement("p");
  receipt.id = "receipt";
  receipt.textContent = "Thanks for buying";
  document.body.append(receipt);
});</script></body></html>`;
const shop = createServer((request, response) => {
  if (request.url.startsWith("/posthog.js")) {
    response.writeHead(200, { "content-type": "application/javascript" });
    response.end(bundle);
  } else {
    response.writeHead(200, { "content-type": "text/html" });
    response.end(page_html);
  }
});
await new Promise((resolve) => shop.listen(0, "127.0.0.1", resolve));
const shopUrl = `http://127.0.0.1:${shop.address().port}/`;

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "warren-chromium-")), {
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  // A person's browser: posthog-js drops, as a bot's, the events of a
  // browser that says it is automated (`navigator.webdriver`) or headless.
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-blink-features=AutomationControlled",
  ],
  userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(TIMEOUT);

// Every exchange with Warren, and every event posthog-js sent.
const answers = [];
const problems = [];
const sent = [];
const encodings = new Set();
// The rrweb events of every recording batch posthog-js sent to /s/.
const snapshots = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("requestfailed", (request) => {
  if (request.url().startsWith(warren)) problems.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
});
// What posthog-js sends by navigator.sendBeacon ("ping" requests; their
// bodies are not shown to the test, so Warren's log is where they are read).
const beacons = [];
// Each beacon's status once Warren answered it: the page is closed only
// after that, or a beacon still on its way is dropped with it.
const beaconAnswers = [];
context.on("request", (request) => {
  if (!request.url().startsWith(warren) || request.resourceType() !== "ping") return;
  beacons.push(new URL(request.url()).pathname);
  request.response().then((response) => beaconAnswers.push(response ? response.status() : "no answer"));
});
// posthog-js's own requests to Warren (not the config script or beacons).
const exchanges = [];
page.on("response", async (response) => {
  const request = response.request();
  if (!request.url().startsWith(warren)) return;
  if (request.method() === "POST") exchanges.push(request);
  const path = new URL(request.url()).pathname;
  answers.push({ method: request.method(), path, status: response.status() });
  if (response.status() >= 400) problems.push(`${request.method()} ${request.url()}: ${response.status()}`);
  if (request.method() === "POST" && /^\/(e|i\/v0\/e)\/?$/.test(path)) {
    for (const event of decodeBatch(request)) sent.push(event);
  }
  if (request.method() === "POST" && /^\/s\/?$/.test(path) && response.status() === 200) {
    for (const event of decodeBatch(request)) snapshots.push(event);
  }
});

/** The events of a capture request, in whichever encoding posthog-js chose. */
function decodeBatch(request) {
  let body = request.postDataBuffer();
  if (!body) return [];
  const gzipped = body[0] === 0x1f && body[1] === 0x8b;
  if (gzipped) body = gunzipSync(body);
  let text = body.toString("utf8");
  encodings.add(gzipped ? "gzip" : text.startsWith("data=") ? "base64" : "json");
  if (text.startsWith("data=")) {
    text = Buffer.from(decodeURIComponent(text.slice(5).split("&")[0]), "base64").toString("utf8");
  }
  const json = JSON.parse(text);
  return Array.isArray(json) ? json : json.batch || [json];
}

async function waitFor(what, predicate) {
  const deadline = Date.now() + TIMEOUT;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${TIMEOUT} ms; answers: ${JSON.stringify(answers)}; problems: ${problems.join("; ")}`);
    await page.waitForTimeout(200);
  }
}

try {
  await page.goto(shopUrl);
  const config = () => answers.find((a) => a.path === `/array/${token}/config.js` || a.path === `/array/${token}/config`);
  await waitFor("the remote configuration", config);
  check(config().status === 200, `remote configuration answered ${config().status}`);
  console.log(`[posthog-js] remote configuration: ${config().path} answered 200`);

  await page.waitForFunction((key) => window.posthog.isFeatureEnabled(key) === true, flag);
  const flags = answers.find((a) => a.path.startsWith("/flags"));
  check(flags && flags.status === 200, `flags answered ${flags && flags.status}`);
  console.log(`[posthog-js] flag ${flag} is on, from /flags`);

  // A multivariate flag and its payload, as the server evaluates them.
  const variant = await page.evaluate(() => window.posthog.getFeatureFlag("checkout-variant"));
  const payload = await page.evaluate(() => window.posthog.getFeatureFlagPayload("checkout-variant"));
  check(variant === "test", `checkout-variant is ${variant}`);
  check(payload && payload.price === 9, `checkout-variant's payload is ${JSON.stringify(payload)}`);
  console.log(`[posthog-js] checkout-variant is ${variant} with payload ${JSON.stringify(payload)}`);

  // Flags asked again: after a reload, and after identify and group.
  const flagRequests = () => answers.filter((a) => a.path.startsWith("/flags")).length;
  const before = flagRequests();
  await page.evaluate(() => window.posthog.reloadFeatureFlags());
  await waitFor("flags reloaded", () => flagRequests() > before);

  await page.click("#buy");
  await page.evaluate(() => window.posthog.group("company", "acme", { plan: "enterprise" }));
  await page.evaluate(() => window.posthog.identify("browser-buyer@example.com", { email: "browser-buyer@example.com" }));
  await page.evaluate(() => window.posthog.capture("checkout started", { cart: 3 }));
  await waitFor("an $autocapture of the click, the group and the custom event", () =>
    ["$autocapture", "$groupidentify", "checkout started"].every((name) => sent.some((e) => e.event === name)));
  // gzip once the remote configuration offers it (a batch sent before it
  // arrived may be plain); never anything but JSON when compression is off.
  const encoded = mode === "uncompressed" ? encodings.size === 1 && encodings.has("json") : encodings.has("gzip");
  check(encoded, `events sent as ${[...encodings]} in mode ${mode}`);
  if (mode === "xhr") {
    const capture = exchanges.filter((request) => /^\/(e|i\/v0\/e|s)\/?$/.test(new URL(request.url()).pathname));
    const transports = new Set(capture.map((request) => request.resourceType()));
    check(transports.size === 1 && transports.has("xhr"), `events sent by ${[...transports]} with api_transport XHR`);
    console.log("[posthog-js] events sent by XMLHttpRequest");
  }
  console.log(`[posthog-js] events sent as ${[...encodings].join(" and ")}`);
  check(sent.some((e) => e.event === "$feature_flag_called"), "a $feature_flag_called was sent");
  const click = sent.find((e) => e.event === "$autocapture");
  const chain = click.properties.$elements_chain || "";
  check(chain.includes("buy-button"), `the click's $elements_chain names the button: ${chain}`);
  check(sent.some((e) => e.event === "$pageview"), "a $pageview was sent");
  console.log(`[posthog-js] autocaptured the click: ${chain.slice(0, 80)}`);

  // The session is recorded: rrweb's full snapshot, then the receipt the
  // click adds, sent to /s/ (posthog-js holds its buffer until the person
  // interacts, so the mouse moves first).
  await page.mouse.move(20, 20);
  await page.mouse.move(120, 80);
  await page.waitForTimeout(300);
  await page.click("#reveal");
  await page.mouse.move(200, 120);
  const rrweb = () => snapshots.flatMap((event) => event.properties.$snapshot_data || []);
  // posthog-js gzips a mutation's lists into Latin-1 strings ("cv").
  const adds = (event) => typeof event.data.adds === "string"
    ? gunzipSync(Buffer.from(event.data.adds, "latin1")).toString("utf8") : JSON.stringify(event.data.adds || []);
  const receipt = (event) => event.type === 3 && event.data.source === 0 && adds(event).includes("Thanks for buying");
  await waitFor("the recording's full snapshot and the receipt's mutation at /s/", () =>
    rrweb().some((event) => event.type === 2) && rrweb().some(receipt));
  const sessions = new Set(snapshots.map((event) => event.properties.$session_id));
  check(sessions.size === 1, `one recorded session, not ${[...sessions]}`);
  console.log(`[posthog-js] recorded ${rrweb().length} rrweb events of session ${[...sessions][0]} to /s/`);

  check(problems.length === 0, `refused or blocked:\n${problems.join("\n")}`);
  // Leaving the page: posthog-js's pagehide handler sends $pageleave and
  // whatever it still holds by sendBeacon, whose answer no page hears (the
  // caller finds the events in Warren's log, which only an accepted request
  // fills). Headless Chromium drops beacons of a real navigation, so the
  // page is told it is hidden as a navigation would tell it.
  await page.evaluate(() => window.dispatchEvent(new PageTransitionEvent("pagehide", { persisted: false })));
  await waitFor("events sent by sendBeacon", () => beacons.some((path) => /^\/(e|i\/v0\/e)\/?$/.test(path)));
  await waitFor("Warren's answer to every beacon", () => beaconAnswers.length === beacons.length);
  check(beaconAnswers.every((status) => status === 200), `beacons answered ${beaconAnswers.join(", ")}`);
  console.log(`[posthog-js] on leaving the page, sent to ${beacons.join(", ")} by sendBeacon`);
  const used = [...new Set(answers.map((a) => `${a.method} ${a.path} ${a.status}`))].sort();
  console.log(`[posthog-js] every answer: ${used.join(", ")}`);
  for (const event of sent) {
    console.log(JSON.stringify({ event: event.event, distinct_id: event.properties.distinct_id, uuid: event.uuid, groups: event.properties.$groups || null }));
  }
  console.log(JSON.stringify({ recording: [...sessions][0], events: rrweb().length }));
  console.log("all checks passed");
} finally {
  await context.close();
  shop.close();
}
