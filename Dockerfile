# syntax=docker/dockerfile:1
#
# mqtt-kafka-spool container image.
#   docker build -t mqtt-kafka-spool:0.1.0 .
#   docker run --rm -e MQTT_BROKER=... -e MQTT_TOPIC=... -e KAFKA_BROKERS=... \
#     -v spool:/var/lib/mqtt-kafka-spool -p 8080:8080 mqtt-kafka-spool:0.1.0
#
# Node 24 LTS in both stages (the bridge refuses to start on anything older). better-sqlite3 ships
# its native addon prebuilt for Node-API in the npm package (linux-x64/arm64, glibc and musl), so
# nothing is compiled. Pin NODE_VERSION to a full version (or the images to digests) for
# reproducible builds.
ARG NODE_VERSION=24

# --- build: compile TypeScript, then drop dev dependencies ------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
# The build needs only the npm registry. (The `node` dev dependency, which gives checkouts on
# older machines their Node 24, is installed here too and removed by the prune below.)
COPY package.json package-lock.json ./
# npm ci's postinstall applies patches/ to the dependencies they name (patch-package; README
# "Memory and CPU" says what each changes and why).
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime ---------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# The heap sizes (as `npm start` uses): the old generation capped at 160 MB (without a cap V8 lets
# garbage grow the heap several times over before collecting), and a 16 MB young generation
# semi-space: a Kafka batch's encoding buffers live for one produce request, and a young generation
# sized from the small cap promotes them, which doubled the CPU per message in garbage collection.
# In NODE_OPTIONS rather than on the command line so that it can be overridden. The young
# generation starts at that size too (--min-semi-space-size, in CMD: Node refuses it in
# NODE_OPTIONS): grown from 1 MB, its first seconds of traffic promote buffers it would have
# collected: at 5,000 msg/s the first second after a start measured a p99 of 86-140 ms, against
# 36-69 ms with it (19-37 ms over ten seconds). --no-allocation-site-pretenuring (also in CMD, also
# refused in NODE_OPTIONS): V8 otherwise decides that objects of a few allocation sites, which
# live as long as a message is in flight, should be allocated in the old generation; they die
# there a few milliseconds later and the old generation is marked and compacted every 0.3 s at
# full speed (16-18 mark-compacts per 100,000 messages, 3 without it; README "Memory and CPU").
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-old-space-size=160 --max-semi-space-size=16" \
    SPOOL_PATH=/var/lib/mqtt-kafka-spool/spool.db
# A fixed, non-root uid/gid (the Helm chart's securityContext uses the same numbers). The spool
# directory is created here, owned by that user, so a fresh named volume starts writable.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && mkdir -p /var/lib/mqtt-kafka-spool \
 && chown app:app /var/lib/mqtt-kafka-spool
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER 10001:10001
# The spool must be on persistent storage: records in it are acknowledged to the MQTT broker
# and exist nowhere else until replay delivers them to Kafka.
VOLUME /var/lib/mqtt-kafka-spool
# HEALTH_PORT: /healthz (liveness), /readyz (readiness), /metrics (Prometheus).
EXPOSE 8080
# Liveness only (not readiness: a Kafka outage is handled by spooling, not by a restart). The slim
# image has no curl, so Node's built-in fetch does the probe. Kubernetes ignores HEALTHCHECK and
# uses the chart's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.HEALTH_PORT||8080)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# Exec form, node directly as PID 1: `docker stop` / Kubernetes send SIGTERM to PID 1, and the
# bridge's handler then drains in-flight messages, commits the spool and PUBACKs within
# SHUTDOWN_TIMEOUT_MS. With `npm start` or a shell-form CMD, PID 1 would be npm or /bin/sh, which
# do not reliably forward SIGTERM; the bridge would be SIGKILLed after the grace period without
# draining (safe, as the broker redelivers, but slower and with duplicates). The bridge spawns no
# child processes, so PID 1's other duty, reaping zombies, does not arise and no init is needed.
CMD ["node", "--min-semi-space-size=16", "--no-allocation-site-pretenuring", "dist/cli.js"]
