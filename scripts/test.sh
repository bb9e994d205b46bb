#!/usr/bin/env bash
# Installs the project with its dev extra into .venv on first use, then runs pytest.
# Extra arguments go to pytest (e.g. ./scripts/test.sh tests/model -q). pytest's exit code is
# returned, except that "no tests collected" (exit 5) is turned into a failure.
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ensure_venv dev
cd "$REPO_ROOT"
status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
