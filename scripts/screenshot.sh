#!/usr/bin/env bash
# Screenshot of the real `vcall` app in a call: runs it under a private Xvfb, hosting a call on
# its embedded relay with two demo bots (test pattern + tone), waits, and writes a PNG.
#
# usage: scripts/screenshot.sh [OUT.png]     (default: assets/screenshot.png)
#   WAIT=SECONDS  time given to the call to settle before the shot (default 30)
#   PROFILE=release|dev  cargo profile of the binary (default dev)
set -euo pipefail

cd "$(dirname "$0")/.."
out="${1:-assets/screenshot.png}"
wait_seconds="${WAIT:-30}"
profile="${PROFILE:-dev}"

for tool in xvfb-run import; do
    command -v "$tool" >/dev/null || { echo "screenshot.sh: $tool is missing (apt-get install xvfb xauth imagemagick)" >&2; exit 1; }
done

cargo build -p vcall-desktop --bin vcall --profile "$profile"
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
profile_dir="$profile"; [ "$profile" = dev ] && profile_dir=debug
vcall="$target_dir/$profile_dir/vcall"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$(dirname "$out")"

# Everything inside runs on the private display; the app gets its own settings file.
cat > "$scratch/inside.sh" <<INSIDE
#!/usr/bin/env bash
set -u
"$vcall" --demo --demo-bots 2 --name "Ada" --camera testsrc --mic tone --speaker none \
    --settings "$scratch/settings.toml" >"$scratch/vcall.log" 2>&1 &
app=\$!
sleep "$wait_seconds"
if ! kill -0 "\$app" 2>/dev/null; then
    echo "screenshot.sh: vcall exited early:" >&2; cat "$scratch/vcall.log" >&2; exit 1
fi
import -window root "$out"
kill "\$app"
wait "\$app" 2>/dev/null || true
INSIDE
chmod +x "$scratch/inside.sh"

XDG_CONFIG_HOME="$scratch" xvfb-run -a -s "-screen 0 1280x800x24" "$scratch/inside.sh"
echo "wrote $out"
