#!/usr/bin/env bash
# Installs the system packages gridsight needs to build, run and test.
# Quick when everything is present: it only calls apt when a package is missing.
# `--bench` adds what only the benchmarks need (ffmpeg, the baseline of bench-cameras;
# valgrind, which counts bench-engine-instructions).
set -euo pipefail

PACKAGES=(
  pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp python3-gi gir1.2-gst-rtsp-server-1.0
  mosquitto mosquitto-clients
  # The wall's tests run it in headless Chromium; its Chinese labels need CJK glyphs.
  chromium fonts-noto-cjk
  # systemd-analyze checks the unit under deploy/systemd (syntax and sandboxing).
  systemd
)
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(ffmpeg valgrind)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# The dashboard is bundled by the daemon's build with Node.js and npm (from the npm
# registry). Debian's own packages, unless the machine already has both.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a system-wide mosquitto on port 1883 after install; the daemon's demo and the
# tests start their own brokers on free ports, so the system one is left alone.
echo "install-deps: done" >&2
