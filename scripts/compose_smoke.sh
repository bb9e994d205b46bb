#!/usr/bin/env bash
# End-to-end check of the docker compose deployment (slow; not part of CI):
# build and start api + trainer, upload the demo dataset, train a small model in the trainer
# container, wait until api serves the promoted version, predict with curl, tear everything down.
#
# Runs under its own compose project ($SMOKE_PROJECT) on port $SMOKE_PORT, so it never touches the
# volumes of a stack you run yourself. Environment:
#   SMOKE_PORT        published API port (default 18000)
#   SMOKE_PROJECT     compose project name (default fusion-smoke)
#   FUSION_IMAGE      tag of the image built (default fusion-service:latest)
#   PIP_EXTRA_ARGS    passed to the image build; when unset, the wheels torch needs are put into
#                     ./wheels with the host's pip and the build installs offline from there
#   FUSION_API_KEY    sent as a bearer token (set it when your .env configures a key)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PORT="${SMOKE_PORT:-18000}"
BASE="http://127.0.0.1:$PORT"
export FUSION_PUBLISH_PORT="$PORT"
COMPOSE=(docker compose --project-name "${SMOKE_PROJECT:-fusion-smoke}")
IMAGE="${FUSION_IMAGE:-fusion-service:latest}"
WORK=$(mktemp -d)
AUTH=()
[ -z "${FUSION_API_KEY:-}" ] || AUTH=(-H "Authorization: Bearer $FUSION_API_KEY")
T0=$SECONDS

log() { printf '[smoke %4ds] %s\n' $((SECONDS - T0)) "$*"; }

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    log "FAILED (exit $status); container logs follow"
    "${COMPOSE[@]}" ps -a || true
    "${COMPOSE[@]}" logs --no-color --tail 200 || true
  fi
  log "tearing down"
  "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

# Puts the project's dependencies, torch included, into ./wheels with the host's pip, so that the
# image build installs them offline (pip inside a build would download multi-GB torch again).
fill_wheels() {
  local python
  python=$(command -v python3.11 || command -v python3)
  log "collecting the wheels of lock/runtime.txt into ./wheels with $python -m pip download"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps -d wheels -r lock/runtime.txt "setuptools>=77"
  export PIP_EXTRA_ARGS="--no-index --find-links /wheels"
}

# wait_http URL STATUS TIMEOUT_S: polls URL until it answers STATUS.
wait_http() {
  local url=$1 want=$2 deadline=$((SECONDS + $3)) code
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
    [ "$code" = "$want" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for $url to answer $want (last: $code)"
      return 1
    fi
    sleep 2
  done
}

# json FILE EXPR: prints a Python expression over the parsed JSON file `d`.
json() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print($2)" "$1"; }

if [ -z "${PIP_EXTRA_ARGS+set}" ]; then
  fill_wheels
fi

log "building the image (PIP_EXTRA_ARGS=${PIP_EXTRA_ARGS:-})"
build_start=$SECONDS
if ! "${COMPOSE[@]}" build api >"$WORK/build.log" 2>&1; then
  tail -n 60 "$WORK/build.log"
  exit 1
fi
log "image built in $((SECONDS - build_start))s: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"

"${COMPOSE[@]}" up -d
wait_http "$BASE/health/live" 200 180
log "api is live; readiness with an empty store: $(curl -s -o /dev/null -w '%{http_code}' "$BASE/health/ready")"

log "writing and zipping the demo dataset inside the api container"
"${COMPOSE[@]}" exec -T api sh -c \
  'rm -rf /tmp/demo /tmp/demo.zip && python -m model demo-data /tmp/demo --n-per-class 100 && cd /tmp/demo && python -m zipfile -c /tmp/demo.zip train.jsonl dev.jsonl images'
"${COMPOSE[@]}" cp api:/tmp/demo.zip "$WORK/demo.zip"
curl -fsS "${AUTH[@]}" -F name=demo -F "file=@$WORK/demo.zip;type=application/zip" "$BASE/datasets" >"$WORK/dataset.json"
log "uploaded dataset: $(json "$WORK/dataset.json" 'd["name"]')"

cat >"$WORK/job-request.json" <<'EOF'
{"dataset": "demo", "validation": "demo:dev", "promote": "always",
 "params": {"image_encoder": "cnn", "text_encoder": "bow", "image_size": 32, "epochs": 10, "batch_size": 32}}
EOF
curl -fsS "${AUTH[@]}" -H 'Content-Type: application/json' -d @"$WORK/job-request.json" "$BASE/jobs" >"$WORK/job.json"
JOB=$(json "$WORK/job.json" 'd["id"]')
log "queued job $JOB"

deadline=$((SECONDS + 900))
while :; do
  curl -fsS "$BASE/jobs/$JOB" >"$WORK/job.json"
  status=$(json "$WORK/job.json" 'd["status"]')
  case "$status" in
    succeeded) break ;;
    failed | cancelled)
      log "job $JOB $status: $(json "$WORK/job.json" 'd["error"]')"
      exit 1
      ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "job $JOB still $status after 900s"
    exit 1
  fi
  log "job $status $(json "$WORK/job.json" '(d["progress"] or {}).get("stage", "")') $(json "$WORK/job.json" 'round(100 * (d["progress"] or {}).get("fraction", 0))')%"
  sleep 5
done
VERSION=$(json "$WORK/job.json" 'd["model_version"]')
log "job succeeded: version $VERSION, promoted=$(json "$WORK/job.json" 'd["promoted"]'), fusion accuracy $(json "$WORK/job.json" '(d["metrics"] or {}).get("fusion", {}).get("accuracy")')"
# Captured first: `logs | grep -q` would fail under pipefail when grep exits early and logs gets SIGPIPE.
trainer_log=$("${COMPOSE[@]}" logs --no-color trainer 2>&1)
if [[ "$trainer_log" != *"$JOB"* ]]; then
  log "the trainer container's log does not mention job $JOB"
  exit 1
fi

wait_http "$BASE/health/ready" 200 120
curl -fsS "$BASE/models/active" >"$WORK/active.json"
active=$(json "$WORK/active.json" 'd["version"]')
serving=$(json "$WORK/active.json" 'd["serving"]')
log "GET /models/active: version $active, serving $serving on $(json "$WORK/active.json" 'd["device"]')"
if [ "$active" != "$VERSION" ] || [ "$serving" != "$VERSION" ]; then
  log "api does not serve the promoted version $VERSION"
  exit 1
fi

if command -v podman >/dev/null 2>&1; then
  # podman records healthchecks but runs them only when asked.
  podman healthcheck run "$("${COMPOSE[@]}" ps -q api)" && log "image healthcheck: healthy"
fi

python3 -m zipfile -e "$WORK/demo.zip" "$WORK/demo"
row=$(head -n 1 "$WORK/demo/train.jsonl")
image=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["image"])' "$row")
text=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["text"])' "$row")
label=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["label"])' "$row")
curl -fsS "${AUTH[@]}" -F "image=@$WORK/demo/$image" -F "text=$text" "$BASE/predict?explain=true" >"$WORK/prediction.json"
log "POST /predict ($image, \"$text\", true label $label):"
python3 -m json.tool "$WORK/prediction.json"
log "smoke test passed in $((SECONDS - T0))s"
