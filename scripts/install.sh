#!/usr/bin/env bash
# Install everything AvatarGraph needs on a fresh Debian 12 machine, then start the app on its embedded
# defaults (SQLite under ./data, 127.0.0.1:8188). Extra arguments go to main.py, e.g. --port 8190.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"

install_apt "$ROOT"/requirements/apt-*.txt
make_venv
mapfile -t reqs < <(app_requirements)
install_python "${reqs[@]}"
install_models
"$PY" -m nodes.io.samples  # portrait.png and speech.wav in ./data/input, as the shipped workflows name them
log "starting AvatarGraph"
exec "$PY" "$ROOT/main.py" "$@"
