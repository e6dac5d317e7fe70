/**
 * Baseline (a): the least a Bun HTTP server can do for this API: same route shape, same JSON,
 * numbers from a process-local counter. Everything else is measured as a ratio to it.
 */
let turno = 0;
const headers = { "content-type": "application/json", "cache-control": "no-store" };
const server = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: "127.0.0.1",
  development: false,
  fetch(request) {
    const url = request.url;
    const id = url.slice(url.lastIndexOf("/") + 1);
    turno++;
    return new Response(`{"id":"${id}","turno":${turno}}`, { headers });
  },
});
process.stdout.write(`listening ${server.port}\n`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
