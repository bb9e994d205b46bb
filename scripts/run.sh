#!/usr/bin/env bash
# Installs the project into .venv on first use, then starts the API. With an empty model store the
# service first trains the default model on the built-in demo data (progress bar), then serves.
# Extra arguments go to `python -m service` (e.g. --port 9000); settings come from FUSION_* / .env.
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ensure_venv "" # runtime dependencies only, no extras
cd "$REPO_ROOT"
exec "$VENV/bin/python" -m service --bootstrap-demo "$@"
