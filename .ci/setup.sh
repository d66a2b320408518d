#!/usr/bin/env bash
# Set up nerfsim from nothing: the system library open3d needs, a venv, the package.
set -euo pipefail
venv=${1:-.venv}
# System packages: libusb for open3d; Debian's Chromium and its driver for the viewer's browser test
# (a browser that a Python package downloads at run time cannot be fetched offline).
apt_missing=()
ldconfig -p 2>/dev/null | grep -q libusb-1.0 || apt_missing+=(libusb-1.0-0)
command -v chromium >/dev/null || apt_missing+=(chromium)
command -v chromedriver >/dev/null || apt_missing+=(chromium-driver)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "[setup] installing ${apt_missing[*]} with apt"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  python3 -m venv "$venv"
fi
# torch and its CUDA wheels take ~9 GiB installed and pip unpacks them in a temporary folder first.
need_gib=12
free_gib=$(df -Pk "$(dirname "$(readlink -f "$venv")")" | awk 'NR==2 {print int($4 / 1048576)}')
if [ "${free_gib:-0}" -lt "$need_gib" ] && [ ! -f "$venv/.nerfsim-installed" ]; then
  echo "[setup] only ${free_gib} GiB free where $venv goes; installing needs about ${need_gib} GiB" >&2
  exit 1
fi
echo "[setup] installing nerfsim and its dependencies into $venv (first time: several minutes)"
set +e  # grep finds no line to print when pip is quiet; pip's own status is what counts
"$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check -e ".[dev]" 2>&1 \
  | grep -v "^WARNING: Location"
pip_status=${PIPESTATUS[0]}
set -e
if [ "$pip_status" != 0 ]; then
  echo "[setup] pip install into $venv failed (exit $pip_status); see its message above" >&2
  exit 1
fi
"$venv/bin/python" -c "import open3d, torch, nerfstudio, sim, scenes" \
  || { echo "[setup] import check failed" >&2; exit 1; }
