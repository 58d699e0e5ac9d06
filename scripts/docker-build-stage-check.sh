#!/usr/bin/env bash
# Runs the Dockerfile's build stage as plain commands (no Docker engine needed), then checks the
# result the way the runtime stage uses it:
#   1. copy the build context (the files .dockerignore lets through) to a temp dir,
#   2. npm ci (better-sqlite3 from source), npm run build, npm prune --omit=dev,
#   3. copy only what the runtime stage copies (package.json, node_modules, dist) to another dir,
#   4. there: dev dependencies are gone, better-sqlite3's addon loads, `node dist/cli.js` with an
#      empty environment exits 2 with the configuration error, and with a valid configuration it
#      serves /healthz (checked with the Dockerfile's HEALTHCHECK command) and stops on SIGTERM.
# Exit 0 when all hold; otherwise prints what failed. Uses the npm registry (npm ci) only.
# KEEP=1 keeps the temp dir for inspection.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/docker-build-stage.XXXXXX")"
BUILD="$WORK/build"
RUNTIME="$WORK/runtime"
BRIDGE_PID=""
cleanup() {
  if [ -n "$BRIDGE_PID" ] && kill -0 "$BRIDGE_PID" 2>/dev/null; then kill -KILL "$BRIDGE_PID" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step() { printf '==> %s\n' "$*"; }
fail() {
  echo "docker-build-stage-check: FAILED: $*" >&2
  exit 1
}

# 1. The build context: the `!path` lines of the allowlist .dockerignore.
step "build context from .dockerignore"
mkdir -p "$BUILD" "$RUNTIME"
mapfile -t context < <(sed -n 's/^!\(.*\)$/\1/p' "$REPO_DIR/.dockerignore" | sed 's#/$##')
[ "${#context[@]}" -gt 0 ] || fail ".dockerignore lets nothing through"
for path in "${context[@]}"; do
  [ -e "$REPO_DIR/$path" ] || fail "$path (in .dockerignore) does not exist"
  cp -R "$REPO_DIR/$path" "$BUILD/$path"
done

# 2. The build stage's RUN lines. The image is node:24; here npm installs Node 24 as the `node`
# dev dependency, and the runtime checks below use a copy of that binary (taken before the prune
# removes it), so they run on the Node the image ships even where the machine has an older one.
cd "$BUILD"
step "npm ci"
npm ci --no-audit --no-fund >"$WORK/npm-ci.log" 2>&1 || { cat "$WORK/npm-ci.log" >&2; fail "npm ci"; }
step "npm run build"
npm run build >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; fail "npm run build"; }
NODE24="$WORK/node24/bin"
mkdir -p "$NODE24"
cp "$BUILD/node_modules/node/bin/node" "$NODE24/node" || fail "the node dev dependency did not install a Node binary"
"$NODE24/node" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 24 ? 0 : 1)' || fail "node_modules/node is not Node 24"
step "npm prune --omit=dev"
npm prune --omit=dev --no-audit --no-fund >"$WORK/prune.log" 2>&1 || { cat "$WORK/prune.log" >&2; fail "npm prune"; }

# 3. What the runtime stage copies, run by the runtime's Node.
export PATH="$NODE24:$PATH"
step "runtime node $(node --version)"
cp -R "$BUILD/package.json" "$BUILD/node_modules" "$BUILD/dist" "$RUNTIME/"
cd "$RUNTIME"
[ -f dist/cli.js ] || fail "dist/cli.js was not built"

# 4. Checks.
step "dev dependencies pruned"
for dev in typescript vitest node; do  # (@types/node stays: mqtt depends on it)
  [ ! -e "node_modules/$dev" ] || fail "devDependency $dev is still in node_modules after npm prune --omit=dev"
done

step "better-sqlite3 native addon loads"
node -e "const D = require('better-sqlite3'); const db = new D(':memory:'); if (db.prepare('select 1 as x').get().x !== 1) process.exit(1);" \
  || fail "better-sqlite3 does not load from the pruned node_modules"

step "patches/ applied in the build stage (patch-package on npm ci)"
node --input-type=module -e "const m = await import('@platformatic/kafka'); if (typeof m.encodeRecordsFast !== 'function') process.exit(1);" \
  || fail "the runtime's @platformatic/kafka is not patched (patches/ not copied before npm ci?)"

step "node dist/cli.js with no configuration exits 2"
set +e
env -i PATH="$PATH" HOME="$WORK" node dist/cli.js >"$WORK/cli.out" 2>"$WORK/cli.err"
code=$?
set -e
[ "$code" -eq 2 ] || { cat "$WORK/cli.err" >&2; fail "expected exit code 2, got $code"; }
grep -q 'invalid configuration' "$WORK/cli.err" || { cat "$WORK/cli.err" >&2; fail "stderr lacks 'invalid configuration'"; }
grep -q 'MQTT_BROKER' "$WORK/cli.err" || { cat "$WORK/cli.err" >&2; fail "stderr does not name MQTT_BROKER"; }

step "node dist/cli.js serves /healthz (the HEALTHCHECK command) and stops on SIGTERM"
# Brokers on ports nothing listens on: the bridge starts anyway (outages are runtime faults).
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
health_port="$(free_port)"
dead_port="$(free_port)"
healthcheck="$(sed -n 's/^  CMD \["node", "-e", "\(.*\)"\]$/\1/p' "$REPO_DIR/Dockerfile" | sed 's/\\"/"/g')"
[ -n "$healthcheck" ] || fail "cannot find the HEALTHCHECK command in the Dockerfile"
env -i PATH="$PATH" HOME="$WORK" \
  MQTT_BROKER=127.0.0.1 MQTT_PORT="$dead_port" MQTT_TOPIC='check/#' KAFKA_BROKERS="127.0.0.1:$dead_port" \
  SPOOL_PATH="$WORK/spool/spool.db" HEALTH_HOST=127.0.0.1 HEALTH_PORT="$health_port" SHUTDOWN_TIMEOUT_MS=5000 LOG_LEVEL=warn \
  node dist/cli.js >"$WORK/run.out" 2>"$WORK/run.err" &
BRIDGE_PID=$!
healthy=0
for _ in $(seq 1 100); do
  if HEALTH_PORT="$health_port" node -e "$healthcheck" 2>/dev/null; then
    healthy=1
    break
  fi
  kill -0 "$BRIDGE_PID" 2>/dev/null || break
  sleep 0.1
done
[ "$healthy" -eq 1 ] || { cat "$WORK/run.err" "$WORK/run.out" >&2; fail "/healthz never answered 200 (HEALTHCHECK command)"; }
kill -TERM "$BRIDGE_PID"
stopped=0
for _ in $(seq 1 100); do
  if ! kill -0 "$BRIDGE_PID" 2>/dev/null; then
    stopped=1
    break
  fi
  sleep 0.1
done
[ "$stopped" -eq 1 ] || fail "still running 10 s after SIGTERM (SHUTDOWN_TIMEOUT_MS=5000)"
set +e
wait "$BRIDGE_PID"
code=$?
set -e
BRIDGE_PID=""
[ "$code" -eq 0 ] || { cat "$WORK/run.err" >&2; fail "exit code $code after SIGTERM, expected 0"; }
[ -f "$WORK/spool/spool.db" ] || fail "no spool file at SPOOL_PATH"

echo "docker-build-stage-check: OK (build stage commands, pruned runtime, exit 2 on bad config, /healthz, SIGTERM)"
