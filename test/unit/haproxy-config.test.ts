import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderHaproxyConfig } from "../../scripts/cluster/haproxy-config.ts";
import { requireBinary } from "../helpers/binaries.ts";

describe("deploy/haproxy template", () => {
  const config = renderHaproxyConfig({
    servers: [
      { name: "app1", address: "10.200.0.11", port: 7017 },
      { name: "app2", address: "10.200.0.12", port: 7017 },
    ],
    bind: "127.0.0.1:18080",
    statsBind: "127.0.0.1:18404",
    statsSocket: "/tmp/haproxy-test.sock",
  });

  test("haproxy -c accepts the rendered configuration", async () => {
    const haproxy = requireBinary("haproxy");
    const dir = mkdtempSync(join(tmpdir(), "turnomatic-haproxy-"));
    try {
      writeFileSync(join(dir, "haproxy.cfg"), config);
      const check = Bun.spawn([haproxy, "-c", "-f", join(dir, "haproxy.cfg")], { stdout: "pipe", stderr: "pipe" });
      const code = await check.exited;
      const output = (await new Response(check.stdout).text()) + (await new Response(check.stderr).text());
      expect(code, output).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("retries only failed connects (never L7 retries), health checks /readyz, exports metrics", () => {
    const retryOn = config.split("\n").filter((line) => /^\s*retry-on\b/.test(line));
    expect(retryOn.map((line) => line.trim())).toEqual(["retry-on conn-failure"]);
    expect(config).toMatch(/^\s*option redispatch/m);
    expect(config).toMatch(/^\s*option httpchk GET \/readyz/m);
    expect(config).toMatch(/use-service prometheus-exporter if \{ path \/metrics \}/);
    expect(config).toMatch(/^\s*server app1 10\.200\.0\.11:7017$/m);
    expect(config).toMatch(/^\s*server app2 10\.200\.0\.12:7017$/m);
    expect(config).not.toContain("{{");
  });

  test("one request per client connection unless clientKeepAlive (clients resend GETs on dropped keep-alives)", () => {
    expect(config).toMatch(/^\s*option httpclose$/m);
    const keepAlive = renderHaproxyConfig({
      servers: [{ name: "app1", address: "10.0.0.1", port: 7017 }],
      clientKeepAlive: true,
    });
    expect(keepAlive).not.toMatch(/^\s*option httpclose$/m);
  });
});
