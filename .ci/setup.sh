#!/usr/bin/env bash
# Set up nerfsim from nothing: the system library open3d needs, a venv, the package.
set -euo pipefail
venv=${1:-.venv}
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then
  echo "[setup] installing libusb-1.0-0 (open3d needs it)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  python3 -m venv "$venv"
fi
echo "[setup] installing nerfsim and its dependencies into $venv (first time: several minutes)"
"$venv/bin/pip" install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import open3d, torch, nerfstudio, sim, scenes" \
  || { echo "[setup] import check failed" >&2; exit 1; }
