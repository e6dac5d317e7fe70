import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, waitFor } from "./ports.ts";

export const ADMIN_TOKEN = "test-admin-token-0123456789";

/** One line of the service's JSON log. */
export interface LogLine {
  level: string;
  event?: string;
  [key: string]: unknown;
}

/** The service's JSON log lines in `text` (what `logs()` returns); other lines (Bun's own) are skipped. */
export function parseLogLines(text: string): LogLine[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as LogLine);
}
const MAIN = join(import.meta.dir, "../src/main.ts");

export interface ServiceProcess {
  readonly url: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly process: Subprocess;
  /** Everything the process wrote to stderr so far (its JSON logs). */
  logs(): string;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface ServiceOptions {
  /** TURNOMATIC_STORE; default a SQLite file in a fresh temporary directory. */
  readonly store?: string;
  readonly env?: Record<string, string>;
  readonly args?: readonly string[];
  readonly port?: number;
  /**
   * TURNOMATIC_STATE_DIR (the store witness files). Default: beside a SQLite store; for other stores
   * a fresh temporary folder, so a Redis port reused by a later test is not taken for a store that
   * lost data. Pass the same folder to restarts that must remember the store.
   */
  readonly stateDir?: string;
  /** Command the service runs under, e.g. ["prlimit", "--nofile=256:256"]. */
  readonly wrapper?: readonly string[];
}

/** Starts `bun src/main.ts` as its own process, on free ports, and waits for /readyz. */
export async function startService(options: ServiceOptions = {}): Promise<ServiceProcess> {
  const port = options.port ?? (await freePort());
  const metricsPort = await freePort();
  let dir: string | undefined;
  let store = options.store;
  if (store === undefined) {
    dir = mkdtempSync(join(tmpdir(), "turnomatic-sqlite-"));
    store = `sqlite:${join(dir, "turnomatic.db")}`;
  }
  let stateDir = options.stateDir;
  let ownStateDir: string | undefined;
  if (stateDir === undefined && !store.startsWith("sqlite:") && options.env?.TURNOMATIC_STATE_DIR === undefined) {
    ownStateDir = mkdtempSync(join(tmpdir(), "turnomatic-state-"));
    stateDir = ownStateDir;
  }
  const child = Bun.spawn([...(options.wrapper ?? []), process.execPath, MAIN, ...(options.args ?? [])], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      METRICS_PORT: String(metricsPort),
      TURNOMATIC_STORE: store,
      TURNOMATIC_ADMIN_TOKEN: ADMIN_TOKEN,
      ...(stateDir === undefined ? {} : { TURNOMATIC_STATE_DIR: stateDir }),
      ...options.env,
    },
    stdout: "ignore",
    stderr: "pipe",
  });
  let logs = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr as ReadableStream<Uint8Array>) logs += decoder.decode(chunk);
  })();
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`turnomatic on ${url}`, async () => {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}: ${logs}`);
      return (await fetch(`${url}/healthz`)).ok;
    });
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    url,
    port,
    metricsPort,
    process: child,
    logs: () => logs,
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode === null) child.kill(signal);
      const code = await child.exited;
      if (dir !== undefined && options.store === undefined && signal !== "SIGKILL") rmSync(dir, { recursive: true, force: true });
      if (ownStateDir !== undefined) rmSync(ownStateDir, { recursive: true, force: true });
      return code;
    },
  };
}

export function adminHeaders(): Record<string, string> {
  return { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
}
