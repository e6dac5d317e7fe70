# syntax=docker/dockerfile:1
# Turnomatic container image: the service on the official Bun image, as a non-root user.
#   docker build -t turnomatic .
#   docker run --init -p 7017:7017 -p 9464:9464 -v turnomatic-data:/data turnomatic
# The Bun version is pinned to the one package.json pins (test/integration/deploy/dockerfile.test.ts keeps them
# equal), so the image runs exactly the runtime the test suite ran.
ARG BUN_VERSION=1.4.5
# OCI image labels (below): the version is package.json's (the dockerfile test keeps them equal);
# pass the commit at build time: docker build --build-arg REVISION="$(git rev-parse HEAD)" .
ARG TURNOMATIC_VERSION=0.1.0
ARG REVISION=unknown

# Stage 1: production dependencies only. Bun migrates package-lock.json in memory and
# --frozen-lockfile refuses to install anything the lockfile does not pin.
FROM oven/bun:${BUN_VERSION}-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The "bun" npm package (and its platform binary) only pins Bun for `npx bun` in development; the
# image already has Bun, so those ~100 MB are dropped.
RUN bun install --frozen-lockfile --production --ignore-scripts \
  && rm -rf node_modules/bun node_modules/@oven node_modules/.bin

# Stage 2: the runtime. Only the sources and the production node_modules are copied.
FROM oven/bun:${BUN_VERSION}-slim AS runtime
ARG BUN_VERSION
ARG TURNOMATIC_VERSION
ARG REVISION
# Standard OCI annotations (github.com/opencontainers/image-spec annotations.md), read by registries,
# scanners and `docker inspect`.
LABEL org.opencontainers.image.title="turnomatic" \
      org.opencontainers.image.description="Distributed ticket-number service: unique, gap-free, ordered turns per id" \
      org.opencontainers.image.version="${TURNOMATIC_VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="Turnomatic" \
      org.opencontainers.image.base.name="oven/bun:${BUN_VERSION}-slim"
WORKDIR /app
# BUN_RUNTIME_TRANSPILER_CACHE_PATH=0: the runtime transpiler cache would write under the home
# directory; off, so the root filesystem can be mounted read-only (Kubernetes readOnlyRootFilesystem).
ENV NODE_ENV=production \
    PORT=7017 \
    METRICS_PORT=9464 \
    TURNOMATIC_STORE=sqlite:/data/turnomatic.db \
    TURNOMATIC_STATE_DIR=/data \
    BUN_RUNTIME_TRANSPILER_CACHE_PATH=0
# The oven/bun images create the user "bun" with uid/gid 1000. /data holds the SQLite file when no
# Redis is configured, and the store witness (how a restarted container recognizes a store that
# lost data, docs/guides/operations.md) either way; it must belong to that user.
RUN mkdir -p /data && chown 1000:1000 /data
COPY --from=deps --chown=1000:1000 /app/node_modules ./node_modules
COPY --chown=1000:1000 package.json ./
COPY --chown=1000:1000 src ./src
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 1000:1000
VOLUME ["/data"]
EXPOSE 7017 9464
# Slim images have no curl: Bun's own fetch probes liveness. /healthz, not /readyz: a draining or
# store-less process is alive and must not be restarted for it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bun", "-e", "const r = await fetch(`http://127.0.0.1:${process.env.PORT ?? 7017}/healthz`).catch(() => null); process.exit(r?.ok ? 0 : 1)"]
# Exec form: bun is PID 1 and receives SIGTERM itself (src/main.ts installs the handler that drains:
# /readyz 503 for TURNOMATIC_DRAIN_DELAY_MS, stop accepting, finish in-flight requests, exit 0).
# PID 1 gets no default signal actions from the kernel, so a SIGTERM that arrives before that
# handler is installed is ignored until the runtime's kill timeout; `docker run --init` (compose:
# `init: true`) puts tini in front and also reaps the worker processes of TURNOMATIC_WORKERS > 1.
ENTRYPOINT ["bun", "--max-http-header-size=16384", "src/main.ts"]
CMD []
