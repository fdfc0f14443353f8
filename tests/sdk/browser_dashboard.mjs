// Drives Warren's dashboard in Debian's Chromium with Playwright, as a
// person would: log in, send events with posthog-node, watch the
// overview's numbers move, look at the events, build and save a trends
// insight onto a dashboard, open a person and the System page. Writes a
// screenshot of every page into the artifacts folder; exits non-zero on
// the first thing that is not as expected.
//
//   node browser_dashboard.mjs <warren url> <email> <password> <project token> <artifacts dir>
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { PostHog } from "posthog-node";

const [url, email, password, token, artifacts] = process.argv.slice(2);
if (!artifacts) {
  console.error("usage: browser_dashboard.mjs <url> <email> <password> <token> <artifacts dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const TIMEOUT = 30_000;
let step = 0;
function say(what) {
  step += 1;
  console.log(`[browser] ${step}. ${what}`);
}
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "warren-chromium-")), {
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1400, height: 1000 },
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(TIMEOUT);
const problems = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("console", (message) => {
  // Refused requests are logged by the browser too; the checks below
  // test every answer that matters, so only script errors count here.
  if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
    problems.push(`console error: ${message.text()}`);
  }
});

async function shot(name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** Waits for a drawn bar (of some height) in the chart under `scope`. */
async function waitForBars(scope) {
  await page.waitForFunction((selector) => [...document.querySelectorAll(`${selector} [data-testid="chart"] rect`)]
    .some((bar) => Number(bar.getAttribute("height")) > 0), scope);
}

/** The number a tile shows, from its data-value (null before the first sample). */
async function tile(id) {
  const value = await page.getAttribute(`[data-testid="tile-${id}"]`, "data-value");
  return value === null || value === "" ? null : Number(value);
}

async function waitForTile(id, predicate, what) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await tile(id).catch(() => null);
    if (value !== null && predicate(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: the ${id} tile shows ${value}`);
    await page.waitForTimeout(500);
  }
}

async function noErrorNotice(where) {
  const errors = await page.locator(".notice.error").allTextContents();
  check(errors.length === 0, `${where} shows an error: ${errors.join(" | ")}`);
}

try {
  say("a stranger sees the login page only");
  const first = await page.goto(`${url}/persons`);
  check(first.ok(), `the login page answers ${first.status()}`);
  check(new URL(page.url()).pathname === "/login", `redirected to ${page.url()}`);
  check((await page.locator("#nav a").count()) === 0, "no navigation before signing in");
  const direct = await page.request.get(`${url}/api/instance/health/`);
  check(direct.status() === 401, `the API without a session answers ${direct.status()}`);
  await shot("01-login");

  say("a wrong password is refused with a message");
  await page.fill("#email", email);
  await page.fill("#password", "not the password");
  await page.click("#sign-in");
  await page.waitForSelector("#login-error:not([hidden])");
  check(new URL(page.url()).pathname === "/login", "still on the login page");

  say("log in and land where we were headed");
  await page.fill("#password", password);
  await page.click("#sign-in");
  await page.waitForURL(`${url}/persons`);
  await page.click('[data-nav="Overview"]');
  await page.waitForSelector('[data-testid="tile-events-received"]');
  const before = await waitForTile("events-received", () => true, "the first health sample");
  const personsBefore = await waitForTile("persons", () => true, "the project's persons");
  await shot("02-overview-before");

  say("posthog-node sends 3 people's events");
  const posthog = new PostHog(token, { host: url, flushAt: 10, flushInterval: 0 });
  const people = ["alice", "bob", "carol"];
  let sent = 0;
  for (const [i, person] of people.entries()) {
    posthog.identify({ distinctId: person, properties: { email: `${person}@example.com`, plan: i === 0 ? "pro" : "free" } });
    sent += 1;
    // Alice and Bob browse in one session each, 50 s long; each of
    // Carol's pageviews is a session of its own (a bounce).
    const base = Math.floor(Date.now() / 1000) * 1000;
    for (let n = 0; n < 6; n += 1) {
      posthog.capture({
        distinctId: person, event: "$pageview", timestamp: new Date(base - (5 - n) * 10_000),
        properties: {
          $current_url: `https://shop.example/page/${n}`, $pathname: `/page/${n}`,
          $browser: i === 1 ? "Firefox" : "Chrome", $device_type: i === 1 ? "Mobile" : "Desktop",
          $session_id: i === 2 ? `${person}-${n}` : `${person}-session`,
          ...(n === 0 ? { $referring_domain: i === 0 ? "www.google.com" : "$direct" } : {}),
          ...(i === 1 ? { utm_source: "newsletter" } : {}),
        },
      });
      sent += 1;
    }
    if (i < 2) {
      posthog.capture({ distinctId: person, event: "signed_up", properties: { plan: i === 0 ? "pro" : "free" } });
      sent += 1;
    }
  }
  // Markup in what senders control must stay text on every page.
  const markup = '<img src=x onerror="window.__xss=1">';
  posthog.capture({ distinctId: markup, event: "xss_probe", properties: { $current_url: "<script>window.__xss=2</script>" } });
  sent += 1;
  await posthog.shutdown();

  say(`the overview's numbers move: ${sent} more events received, 4 more persons`);
  const after = await waitForTile("events-received", (v) => v >= before + sent, "events received");
  await waitForTile("persons", (v) => v >= personsBefore + 4, "persons");
  await page.waitForSelector('[data-testid="chart-events"] circle');
  await noErrorNotice("the overview");
  await shot("03-overview-after");
  console.log(`[browser]    events received ${before} → ${after}`);

  say("web analytics: visitors, pageviews, sessions, bounces, session length and the top lists");
  await page.click('[data-nav="Web analytics"]');
  const web = async (id) => Number(await page.getAttribute(`[data-testid="web-${id}"]`, "data-value"));
  await page.waitForSelector('[data-testid="web-pages"]');
  check(await page.inputValue('select[aria-label="Range"]') === "7", "the last 7 days by default");
  // The overview saw the persons; the pageviews may still be on their way
  // into the store: the page is drawn again until they are all there.
  for (const deadline = Date.now() + 60_000; await web("pageviews") !== 18;) {
    check(Date.now() < deadline, `pageviews: ${await web("pageviews")}`);
    await page.waitForTimeout(500);
    await page.reload();
    await page.waitForSelector('[data-testid="web-pages"]');
  }
  check(await web("visitors") === 3, `visitors: ${await web("visitors")}`);
  check(await web("sessions") === 8, `sessions: ${await web("sessions")}`);
  check(Math.abs(await web("bounce-rate") - 0.75) < 1e-9, `bounce rate: ${await web("bounce-rate")}`);
  // Each request's clock-skew correction may move a pageview by a second.
  check(Math.abs(await web("session-duration") - 12.5) <= 0.25, `session length: ${await web("session-duration")}`);
  const column = async (table) => page.locator(`[data-testid="web-${table}"] tbody tr td:first-child`).allTextContents();
  check((await column("pages")).length === 6, `top pages: ${await column("pages")}`);
  check((await column("referrers")).join(",") === "$direct,www.google.com", `referrers: ${await column("referrers")}`);
  check((await column("utm-sources")).join(",") === "newsletter", `UTM sources: ${await column("utm-sources")}`);
  check((await column("devices")).join(",") === "Desktop,Mobile", `devices: ${await column("devices")}`);
  await noErrorNotice("web analytics");
  await shot("04-web-analytics");

  say("the events page lists them, newest first, with details on a click");
  await page.click('[data-nav="Events"]');
  await page.waitForSelector('[data-testid="event-row"]');
  await page.waitForFunction(() => [...document.querySelectorAll(".event-name")].some((e) => e.textContent === "signed_up"));
  const rows = await page.locator('[data-testid="event-row"]').count();
  check(rows === sent, `the events page shows ${rows} rows of the ${sent} sent`);
  check((await page.locator('[data-testid="person-link"]', { hasText: markup }).count()) === 1, "the markup distinct id is shown as text");
  check((await page.evaluate(() => window.__xss)) === undefined, "no markup ran");
  await page.locator('[data-testid="event-row"]').first().click();
  await page.waitForSelector('tr.details:not([hidden]) [data-testid="event-properties"]');
  await shot("04-events");
  await page.selectOption('select[name="event"]', "signed_up");
  await page.click('[data-testid="event-filters"] button[type="submit"]');
  await page.waitForFunction(() => {
    const names = [...document.querySelectorAll(".event-name")].map((e) => e.textContent);
    return names.length === 2 && names.every((n) => n === "signed_up");
  });

  say("build a trends insight of pageviews, as bars");
  await page.click('[data-nav="Insights"]');
  await page.click('[data-testid="new-insight"]');
  await page.waitForSelector('[data-testid="insight-builder"]');
  await page.fill('input[aria-label="Event 1"]', "$pageview");
  await page.dispatchEvent('input[aria-label="Event 1"]', "change");
  await page.selectOption('select[aria-label="Date range"]', "-24h");
  await page.selectOption('select[aria-label="Interval"]', "hour");
  await page.selectOption('select[aria-label="Chart type"]', "ActionsBar");
  await page.click('[data-testid="run-insight"]');
  await waitForBars('[data-testid="insight-result"]');
  const total = await page.locator('[data-testid="series-totals"] td.num').first().textContent();
  check(Number(total.replace(/,/g, "")) === 18, `the trends total is ${total}, 18 pageviews were sent`);
  await noErrorNotice("the trends insight");
  await shot("05-insight-trends");

  say("save it and put it on a new dashboard");
  await page.fill('input[aria-label="Insight name"]', "Pageviews by hour");
  await page.click('[data-testid="save-insight"]');
  await page.waitForSelector('[data-testid="save-status"][data-insight-id]');
  await page.selectOption('select[aria-label="Dashboard"]', "new");
  await page.fill('input[aria-label="New dashboard name"]', "Launch dashboard");
  await page.click('[data-testid="add-to-dashboard"]');
  await page.click('[data-testid="dashboard-link"]');
  await page.waitForSelector('[data-testid="dashboard-name"]');
  check((await page.textContent('[data-testid="dashboard-name"]')) === "Launch dashboard", "the dashboard's name");
  await waitForBars('[data-testid="dashboard-tile"]');
  await shot("06-dashboard");

  say("the other insight kinds draw too");
  await page.goto(`${url}/insights/new`);
  await page.waitForSelector('[data-testid="insight-builder"]');
  await page.click('button[data-kind="FunnelsQuery"]');
  await page.click('[data-testid="add-series"]');
  await page.fill('input[aria-label="Event 1"]', "$pageview");
  await page.dispatchEvent('input[aria-label="Event 1"]', "change");
  await page.fill('input[aria-label="Event 2"]', "signed_up");
  await page.dispatchEvent('input[aria-label="Event 2"]', "change");
  await page.click('[data-testid="run-insight"]');
  await page.waitForSelector('[data-testid="funnel-chart"]');
  const counts = await page.locator('[data-testid="funnel-chart"] .step-count').allTextContents();
  check(counts.join(",") === "3,2", `funnel steps ${counts}`);
  await shot("07-insight-funnel");
  for (const [kind, selector, name] of [
    ["RetentionQuery", '[data-testid="retention-table"]', "08-insight-retention"],
    ["LifecycleQuery", '[data-testid="chart"]', "09-insight-lifecycle"],
    ["StickinessQuery", '[data-testid="chart"]', "10-insight-stickiness"],
  ]) {
    await page.click(`button[data-kind="${kind}"]`);
    await page.waitForSelector(`[data-testid="insight-result"][data-kind="${kind}"] ${selector}`);
    await noErrorNotice(kind);
    await shot(name);
  }

  say("find a person and open them");
  await page.click('[data-nav="Persons"]');
  await page.fill('input[name="search"]', "alice@example.com");
  await page.press('input[name="search"]', "Enter");
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="persons-table"] tbody tr').length === 1);
  await page.click('[data-testid="persons-table"] [data-testid="person-link"]');
  await page.waitForSelector('[data-testid="person-properties"]');
  check((await page.textContent('[data-testid="person-properties"]')).includes("alice@example.com"), "alice's email");
  check((await page.textContent('[data-testid="person-distinct-ids"]')).includes("alice"), "alice's distinct id");
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="person-events"] [data-testid="event-row"]').length === 8);
  await shot("11-person");

  say("the System page shows version, migrations, jobs, the ClickHouse cluster and a redacted configuration");
  await page.click('[data-nav="System"]');
  await page.waitForSelector('[data-testid="migrations"]');
  const states = await page.locator('[data-testid="migrations"] tbody tr td:nth-child(3)').allTextContents();
  check(states.length >= 5 && states.every((s) => s === "applied"), `migrations ${states}`);
  const config = await page.textContent('[data-testid="config"]');
  check(!config.includes(password), "the password is not shown");
  check(config.includes("********"), "secrets are marked as hidden");
  check((await page.textContent('[data-testid="version"]')).length > 0, "a version");
  const servers = await page.locator('[data-testid="clickhouse-hosts"] tbody tr').count();
  check(servers === 4, `the ClickHouse cluster's four servers, not ${servers}`);
  const readonly = await page.locator('[data-testid="clickhouse-replicas"] tbody tr td:nth-child(3)').allTextContents();
  check(readonly.length >= 4 && readonly.every((r) => r === "no"), `replicas writable: ${readonly}`);
  await shot("12-system");

  say("sign out");
  await page.click("#logout");
  await page.waitForURL(`${url}/login`);
  const again = await page.goto(`${url}/`);
  check(new URL(page.url()).pathname === "/login" && again.ok(), "signed out for good");

  check(problems.length === 0, problems.join("\n"));
  console.log("[browser] all checks passed");
} catch (error) {
  await shot("failure").catch(() => null);
  console.error(`[browser] step ${step} failed: ${error.stack || error}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await context.close();
}
