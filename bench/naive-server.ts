/**
 * Baseline (e): the naive design the brief starts from — one Redis INCR per request, no
 * coalescing (ioredis without auto-pipelining). What coalescing saves is measured against it.
 */
import Redis from "ioredis";

const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", { autoResendUnfulfilledCommands: false });
const headers = { "content-type": "application/json", "cache-control": "no-store" };
const server = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: "127.0.0.1",
  development: false,
  async fetch(request) {
    const url = request.url;
    const id = url.slice(url.lastIndexOf("/") + 1);
    const turno = await redis.incr(`naive:${id}`);
    return new Response(`{"id":"${id}","turno":${turno}}`, { headers });
  },
});
process.stdout.write(`listening ${server.port}\n`);
process.on("SIGTERM", () => {
  server.stop(true);
  redis.disconnect();
  process.exit(0);
});
