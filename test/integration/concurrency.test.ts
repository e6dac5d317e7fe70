/**
 * I1-I4 under concurrency, for every store: >= 200 concurrent clients on one id and on 50 ids,
 * every request recorded and judged by the history checker.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { checkHistory, formatVerdict } from "../../harness/history-checker.ts";
import { startService } from "../../harness/service.ts";
import { STORE_FIXTURES } from "../../harness/store-factories.ts";
import { readCounters, runTurnLoad } from "../../harness/turn-load.ts";

const FULL = process.env.TURNOMATIC_FULL === "1";
const REQUESTS = FULL ? 100_000 : 6_000;

for (const makeFixture of STORE_FIXTURES) {
  const fixture = makeFixture();
  describe(`concurrency: ${fixture.name}`, () => {
    afterAll(() => fixture.teardown());

    for (const idCount of [1, 50]) {
      test(`200 clients on ${idCount} id(s): no duplicate, no gap, real-time order`, async () => {
        const service = await startService({ store: await fixture.serviceUrl(), args: fixture.serviceArgs?.() });
        try {
          const ids = Array.from({ length: idCount }, (_, i) => `c${idCount}-${i}`);
          const history = await runTurnLoad({ url: service.url, ids, clients: 200, requests: REQUESTS });
          const verdict = checkHistory(history, { after: await readCounters(service.url, ids) });
          expect(verdict.totals.requests).toBe(REQUESTS);
          expect(verdict.totals.issued).toBe(REQUESTS);
          if (!verdict.ok) throw new Error(formatVerdict(verdict));
        } finally {
          await service.stop();
        }
      });
    }
  });
}
