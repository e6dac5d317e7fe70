/**
 * Helper process for sqlite-shared-file.test.ts: waits until the given instant, opens the SQLite
 * store at the given path, reserves one number, and prints "ok" or the error.
 */
import { SqliteStore } from "../../src/stores/sqlite-store.ts";

const [path, startAt] = [process.argv[2] as string, Number(process.argv[3])];
await Bun.sleep(Math.max(0, startAt - Date.now()));
try {
  const store = new SqliteStore({ path, busyTimeoutMs: 1000 });
  const reservation = await store.reserve({ id: "shared", n: 1 });
  await store.close();
  console.log(`ok ${reservation.first}`);
} catch (error) {
  console.log(`error ${(error as Error).message}`);
}
