# shellcheck shell=bash
# Sourced by run.sh and test.sh: creates .venv and installs the project into it, once per lock.
#
# The exact versions come from lock/runtime.txt (no extra) or lock/dev.txt (the dev extra), written by
# `python -m scripts.lock`, installed with --no-deps so nothing else is resolved: CI tests the versions
# the image ships. The stamp file records the hash of pyproject.toml and the lock plus the extra, so a
# second run skips pip entirely; editing either (or asking for another extra) reinstalls.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${FUSION_VENV:-$REPO_ROOT/.venv}"
STAMP="$VENV/.fusion-install-stamp"

# Prints the first interpreter that is Python >= 3.11 ($PYTHON wins when set).
find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.11 python3.12 python3.13 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

# ensure_venv [EXTRA]: makes sure .venv exists and holds the project (editable) plus EXTRA (e.g. dev).
ensure_venv() {
  local extra="${1:-}" python hash lock stamp_hash="" stamp_extra=""
  if [ ! -x "$VENV/bin/python" ]; then
    python=$(find_python)
    echo "==> Creating virtual environment $VENV with $python"
    "$python" -m venv "$VENV"
  fi
  if [ -f "$STAMP" ]; then
    read -r stamp_hash stamp_extra <"$STAMP" || true
  fi
  # An environment with the dev extra already holds everything the runtime lock does.
  [ -n "$extra" ] || extra="${stamp_extra:-}"
  lock="$REPO_ROOT/lock/runtime.txt"
  [ "$extra" != dev ] || lock="$REPO_ROOT/lock/dev.txt"
  hash=$(cat "$REPO_ROOT/pyproject.toml" "$lock" | sha256sum | cut -d' ' -f1)
  if [ "${stamp_hash:-}" = "$hash" ] && [ "${stamp_extra:-}" = "$extra" ]; then
    return 0
  fi
  echo "==> Installing fusion-service${extra:+[$extra]} from ${lock#"$REPO_ROOT"/} into $VENV (first run only; torch is large)"
  "$VENV/bin/python" -m pip install --quiet --quiet --disable-pip-version-check --no-deps -r "$lock"
  "$VENV/bin/python" -m pip install --quiet --quiet --disable-pip-version-check --no-deps -e "$REPO_ROOT"
  echo "$hash ${extra}" >"$STAMP"
}
