#!/usr/bin/env bash
# Installs the system packages vcall needs to build, test and run, when they are missing.
# Debian/Ubuntu only (apt); elsewhere it prints what to install and exits non-zero.
set -euo pipefail

PACKAGES=(
  # build: bindgen (nokhwa V4L), bundled libopus (cmake), cpal (ALSA), openh264 SIMD (nasm)
  libclang-dev cmake libasound2-dev pkg-config nasm build-essential
  # GUI at run time (eframe glow on Mesa) and headless display for tests/screenshots
  xvfb xauth imagemagick libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libx11-6 libx11-xcb1
  libxcursor1 libxi6 libxkbcommon-x11-0 libfontconfig1
  # a real audio path without a sound card (PulseAudio null sink + sine source through ALSA)
  pulseaudio pulseaudio-utils libasound2-plugins
  # relay scale-out tests
  nats-server
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "vcall: please install the equivalents of these Debian packages: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "vcall: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "vcall: installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
