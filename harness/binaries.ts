/** Fails loudly (never skips silently) when a test needs a program that is not installed. */
export function requireBinary(name: string, hint = `apt-get install ${name}`): string {
  const path = Bun.which(name);
  if (path === null)
    throw new Error(
      `this test needs '${name}', which is not on PATH; install it (${hint}) or run 'npm test', which installs it as root`,
    );
  return path;
}

/** Fails loudly when a test needs root (network namespaces). */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`this test needs root for ${what}; run it as root (CI does)`);
}
