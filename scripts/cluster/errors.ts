/** The errors of the cluster tool (a usage error is the toolkit's UsageError), and its module guard. */

/** What the cluster tool reports to its user (exit 1); the message says what to do. */
export class ClusterError extends Error {}

export function requireClusterRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new ClusterError(
      "the cluster tool creates network namespaces, which needs root: run it as root (e.g. sudo npm run cluster -- up).",
    );
  }
}

/** The answer of a module of the cluster tool run as a command: it is not one (exit 0 on --help, else 2). */
export function moduleOfTheClusterTool(path: string): never {
  const help = process.argv.includes("--help") || process.argv.includes("-h");
  (help ? process.stdout : process.stderr).write(
    `usage: ${path} is a module of the cluster tool; run: npm run cluster -- --help\n`,
  );
  process.exit(help ? 0 : 2);
}
