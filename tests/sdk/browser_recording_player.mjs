// A recorded session played back in Warren's dashboard, in Debian's
// Chromium: signs in, opens the recording's page, checks that the player
// shows the page as recorded at its start (no receipt yet) and, moved to a
// later moment, the receipt the session added. Saves a screenshot of each
// frame; exits non-zero on the first thing that is not as expected.
//
//   node browser_recording_player.mjs <url> <email> <password> <session id> <artifacts dir>
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, email, password, session, artifacts] = process.argv.slice(2);
if (!artifacts) {
  console.error("usage: browser_recording_player.mjs <url> <email> <password> <session id> <artifacts dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "warren-chromium-")), {
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  viewport: { width: 1400, height: 1000 },
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(30_000);
const problems = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console error: ${message.text()}`);
});

/** The text of the page the player rebuilt, inside its frame. */
async function replayed() {
  const frame = page.frameLocator('[data-testid="recording-player"] iframe');
  return (await frame.locator("body").textContent({ timeout: 5_000 }).catch(() => "")) || "";
}

try {
  await page.goto(`${url}/login?next=${encodeURIComponent("/recordings")}`, { waitUntil: "domcontentloaded" });
  await page.fill('input[name="email"]', email);
  await page.fill('input[name="password"]', password);
  await page.click('button[type="submit"]');
  await page.waitForSelector('[data-testid="recordings-table"]');
  const listed = await page.locator('[data-testid="recording-link"]').allTextContents();
  check(listed.includes(session), `the list shows ${session}: ${listed}`);
  console.log(`[player] the recordings page lists ${session}`);

  // The player's page is loaded afresh (its own content security policy).
  await page.click(`[data-testid="recording-link"]:text-is("${session}")`);
  await page.waitForSelector('[data-testid="recording-player"] iframe');
  await page.waitForFunction(() => document.querySelector('[data-testid="recording-player"] iframe')
    ?.contentDocument?.body?.textContent?.includes("Buy now"));
  const first = await replayed();
  check(first.includes("Buy now") && !first.includes("Thanks for buying"), `the first frame: ${first}`);
  await page.screenshot({ path: join(artifacts, "recording-first-frame.png"), fullPage: true });
  console.log("[player] the first frame shows the shop before the receipt");

  const total = Number((await page.locator('[data-testid="recording-goto"]').evaluate((input) =>
    input.parentElement.textContent)).match(/of (\d+)/)[1]);
  check(total > 0, `the recording lasts ${total} ms`);
  await page.fill('[data-testid="recording-goto"]', String(total));
  await page.dispatchEvent('[data-testid="recording-goto"]', "change");
  await page.waitForFunction(() => document.querySelector('[data-testid="recording-player"] iframe')
    ?.contentDocument?.body?.textContent?.includes("Thanks for buying"));
  const clock = Number(await page.locator('[data-testid="recording-time"]').textContent());
  check(clock > 0, `the player's clock moved on: ${clock}`);
  await page.screenshot({ path: join(artifacts, "recording-later-frame.png"), fullPage: true });
  console.log(`[player] at ${clock} of ${total} ms the receipt the session added is shown`);

  check(problems.length === 0, `errors:\n${problems.join("\n")}`);
  console.log("all checks passed");
} finally {
  await context.close();
}
