# shellcheck shell=bash
# Sourced by run.sh and test.sh: creates .venv and installs the project into it, once per pyproject.toml.
#
# The stamp file records the hash of pyproject.toml and the extras installed with it, so a second
# run skips pip entirely; editing pyproject.toml (or asking for an extra not yet installed) reinstalls.

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
  local extra="${1:-}" python hash stamp_hash stamp_extra target
  if [ ! -x "$VENV/bin/python" ]; then
    python=$(find_python)
    echo "==> Creating virtual environment $VENV with $python"
    "$python" -m venv "$VENV"
  fi
  hash=$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1)
  if [ -f "$STAMP" ]; then
    read -r stamp_hash stamp_extra <"$STAMP" || true
    if [ "$stamp_hash" = "$hash" ] && { [ -z "$extra" ] || [ "${stamp_extra:-}" = "$extra" ]; }; then
      return 0
    fi
  fi
  target="$REPO_ROOT"
  [ -z "$extra" ] || target="${REPO_ROOT}[$extra]"
  echo "==> Installing fusion-service${extra:+[$extra]} into $VENV (first run only; torch is large)"
  "$VENV/bin/python" -m pip install --quiet --quiet --disable-pip-version-check -e "$target"
  echo "$hash ${extra}" >"$STAMP"
}
