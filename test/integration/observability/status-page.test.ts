/**
 * The status page in a real browser (Debian's chromium driven by playwright-core; no browser is
 * downloaded): it loads from the metrics port of a running service under a little load, fills in the
 * request rate, latency and busiest ids by itself, and the test saves a screenshot.
 */
import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { requireBinary } from "../../../harness/binaries.ts";
import { startService } from "../../../harness/service.ts";

const SCREENSHOT_DIR = process.env.TURNOMATIC_SCREENSHOT_DIR ?? join(tmpdir(), "turnomatic-screenshots");

test("the status page shows live numbers in headless Chromium", async () => {
  const executablePath = requireBinary("chromium", "apt-get install chromium");
  const service = await startService({ store: "memory:" });
  const profile = mkdtempSync(join(tmpdir(), "turnomatic-chromium-"));
  let running = true;
  // A little load on three ids, the busiest first.
  const load = Promise.all(
    [
      ["checkout", 6],
      ["bakery", 3],
      ["pharmacy", 1],
    ].map(async ([id, clients]) => {
      await Promise.all(
        Array.from({ length: Number(clients) }, async () => {
          while (running) {
            await fetch(`${service.url}/turno/${id}`, { method: "POST" }).catch(() => undefined);
            await Bun.sleep(5);
          }
        }),
      );
    }),
  );
  // A fresh profile directory per run (playwright wants it as launchPersistentContext's argument).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1000, height: 760 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage();
    for (const origin of [`http://127.0.0.1:${service.metricsPort}`]) {
      await page.goto(`${origin}/`);
      expect(await page.title()).toBe("Turnomatic status");
      // Rates need two polls; wait until the page shows a positive request rate and a latency.
      // (Expressions as strings: they run in the page, which this file's TypeScript types do not describe.)
      await page.waitForFunction('Number(document.getElementById("rate").textContent.replace(/,/g, "")) > 0', null, {
        timeout: 15_000,
      });
      await page.waitForFunction('/s$/.test(document.getElementById("p99").textContent)', null, { timeout: 15_000 });
      expect(await page.textContent("#store")).toBe("up");
      // The ledger card: the store's own totals (lost may be above 0 until the next delivery report).
      await page.waitForFunction('/issued/.test(document.getElementById("lost-of").textContent)', null, { timeout: 15_000 });
      expect(Number((await page.textContent("#lost"))?.replace(/,/g, ""))).toBeGreaterThanOrEqual(0);
      const firstRow = await page.textContent("#busiest tr:first-child td:first-child");
      expect(firstRow).toBe("checkout");
      const turn = Number((await page.textContent("#busiest tr:first-child td:nth-child(2)"))?.replace(/,/g, ""));
      expect(turn).toBeGreaterThan(0);
    }
    // Let the chart gather a few points before the picture.
    await Bun.sleep(5000);
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const path = join(SCREENSHOT_DIR, "status-page.png");
    await page.screenshot({ path, fullPage: true });
    console.log(`[status-page] screenshot: ${path}`);
    expect(Bun.file(path).size).toBeGreaterThan(10_000);
  } finally {
    running = false;
    await load;
    await browser.close();
    await service.stop("SIGKILL");
    rmSync(profile, { recursive: true, force: true });
  }
}, 90_000);
