#!/usr/bin/env bash
# bench-ratios.sh: runs vcall's criterion suites (short settings) and prints every figure beside
# its in-run baseline as a ratio, with the goal it is held to, as a Markdown table
# (the table in BENCHMARKS.md comes from here).
#
# Usage: scripts/bench-ratios.sh [SUITE...]    suites: aead handshake video audio proto
#                                              relay_fanout (default: all, one cargo command)
# Env:   MEASURE=2 (seconds per benchmark)  WARMUP=0.5  REPORT_ONLY=DIR (re-read a kept run)
#        KEEP=1 (keep the criterion directory; its path is printed)
#
# Ratios use each benchmark's median time, measured minutes apart in the same process, so a
# machine that gets busier or quieter between runs shifts both sides alike; absolute figures
# on a shared machine are only indicative.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MEASURE="${MEASURE:-2}"
WARMUP="${WARMUP:-0.5}"

if [[ -n "${REPORT_ONLY:-}" ]]; then
    OUT="$REPORT_ONLY"
else
    OUT="$(mktemp -d -t vcall-criterion.XXXXXX)"
    if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$OUT"' EXIT; else echo "criterion data in $OUT"; fi
    BENCH_ARGS=()
    SUITES=("$@")
    if [[ ${#SUITES[@]} -eq 0 ]]; then
        SUITES=(aead handshake video audio proto relay_fanout)
    fi
    for suite in "${SUITES[@]}"; do BENCH_ARGS+=(--bench "$suite"); done
    # CRITERION_HOME: criterion's output directory (kept apart from the shared target dir).
    CRITERION_HOME="$OUT" cargo bench -p vcall-benches "${BENCH_ARGS[@]}" -- \
        --warm-up-time "$WARMUP" --measurement-time "$MEASURE" --noplot 2>&1 \
        | grep -Ev '^(Benchmarking .*: (Warming up|Collecting|Analyzing)|Warning: Unable to complete|You may wish to|Found [0-9]+ outliers|  [0-9]+ \((low|high)) ' \
        || true
fi

python3 - "$OUT" <<'PY'
import glob, json, os, sys

home = sys.argv[1]
res = {}
for path in glob.glob(os.path.join(home, "**", "new", "benchmark.json"), recursive=True):
    with open(path) as f:
        b = json.load(f)
    with open(os.path.join(os.path.dirname(path), "estimates.json")) as f:
        e = json.load(f)
    key = b["full_id"]
    ns = e["median"]["point_estimate"]
    tp = b.get("throughput") or {}
    units = tp.get("Bytes") or tp.get("Elements") or tp.get("BytesDecimal") or 1
    res[key] = {"ns": ns, "rate": units / (ns * 1e-9), "bytes": "Bytes" in tp}

def get(k):
    return res.get(k)

def fmt_rate(r, unit):
    if r is None:
        return "-"
    v = r["rate"]
    if unit == "B/s":
        return f"{v / 1e9:.2f} GB/s"
    if unit == "x realtime":
        return f"{v * 0.020:.0f}x realtime"
    if unit == "fps":
        return f"{v:.0f} fps"
    if unit == "pkt/s":
        return f"{v / 1e6:.2f} M pkt/s" if v >= 1e6 else f"{v / 1e3:.0f} k pkt/s"
    if unit == "dgram/s":
        return f"{v / 1e3:.0f} k dgram/s"
    return f"{v:.3g}"

rows = []
def pair(name, mine, base, unit, goal=None):
    a, b = get(mine), get(base)
    if a is None and b is None:
        return
    ratio = a["rate"] / b["rate"] if a and b else None
    verdict = ""
    if goal is not None and ratio is not None:
        verdict = "met" if ratio >= goal else "**MISSED**"
    rows.append((name, fmt_rate(a, unit), fmt_rate(b, unit),
                 "-" if ratio is None else f"{ratio:.2f}x",
                 "" if goal is None else f">= {goal}x", verdict))

for op in ("seal", "open"):
    for n in (1200, 8192, 65536):
        pair(f"AEAD {op} {n} B (unsigned, v1 path) vs ring", f"aead_{op}/unsigned/{n}",
             f"aead_{op}/ring_raw/{n}", "B/s", 0.8)
        pair(f"{op} {n} B signed (Session, v2) vs unsigned", f"aead_{op}/vcall/{n}",
             f"aead_{op}/unsigned/{n}", "B/s")
        if op == "seal":
            pair(f"seal_in_place {n} B signed vs unsigned", f"aead_seal/vcall_in_place/{n}",
                 f"aead_seal/unsigned/{n}", "B/s")
for op in ("seal", "open"):
    pair(f"audio batch of 5 x 100 B, {op}: signed vs unsigned", f"audio_batch/{op}_signed",
         f"audio_batch/{op}_unsigned", "pkt/s")
for size in ("720p", "360p"):
    g = f"video_{size}"
    pair(f"{size} send pipeline (encode+seal+fragment) vs raw encode",
         f"{g}/send_pipeline", f"{g}/encode_raw", "fps", 0.85)
    pair(f"{size} recv pipeline (reassemble+open+decode) vs raw decode",
         f"{g}/recv_pipeline", f"{g}/decode_raw", "fps", 0.85)
pair("Opus encode, vcall wrapper vs opus crate", "audio_opus/encode_vcall",
     "audio_opus/encode_raw", "x realtime")
pair("Opus decode, vcall wrapper vs opus crate", "audio_opus/decode_vcall",
     "audio_opus/decode_raw", "x realtime")
pair("Opus encode, speech with pauses: CBR (default) vs VBR", "audio_padding/encode_cbr",
     "audio_padding/encode_vbr", "x realtime")
for kind in ("fragment", "reassemble"):
    for n in (8192, 65536):
        pair(f"{kind} {n} B frame vs memcpy of it", f"proto_{kind}/vcall/{n}",
             f"proto_{kind}/memcpy/{n}", "pkt/s")
for r in (1, 3, 10):
    pair(f"relay fan-out 1->{r} vs bare quinn forwarder", f"relay_fanout/vcall_relay/{r}",
         f"relay_fanout/bare_quinn/{r}", "dgram/s", 0.8)
    pair(f"relay fan-out 1->{r}, --access token vs bare quinn forwarder",
         f"relay_fanout/vcall_relay_token/{r}", f"relay_fanout/bare_quinn/{r}", "dgram/s", 0.8)

hs = {k.split("/", 1)[1]: v["ns"] / 1e6 for k, v in res.items() if k.startswith("handshake/")}
room = hs.get("room_10_full_exchange")
need = ("oaep_wrap", "oaep_unwrap", "sign", "verify")
if room and all(k in hs for k in need):
    floor = 90 * (hs["oaep_wrap"] + hs["oaep_unwrap"] + 2 * hs["sign"] + 2 * hs["verify"])
    rows.append(("10-peer room key exchange vs its crypto floor "
                 "(90 x (wrap + unwrap + 2 sign + 2 verify))",
                 f"{room:.0f} ms", f"{floor:.0f} ms", f"{floor / room:.2f}x", "", ""))

print()
print("| benchmark | vcall | baseline (same run) | ratio | goal | |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")

print()
print("| figure | value |")
print("|---|---|")
for k in ("720p", "360p"):
    r = get(f"video_{k}/encode_raw")
    if r:
        print(f"| {k} encode (openh264, test pattern) | {r['rate']:.0f} fps |")
    r = get(f"video_{k}/decode_raw")
    if r:
        print(f"| {k} decode | {r['rate']:.0f} fps |")
for k in ("encode_vcall", "decode_vcall"):
    r = get(f"audio_opus/{k}")
    if r:
        print(f"| Opus 20 ms {k.split('_')[0]} | {r['rate'] * 0.020:.0f}x realtime |")
for k, label in (("identity_generate_2048", "identity generation (RSA-2048 + Ed25519)"),
                 ("oaep_wrap", "RSA-OAEP wrap"), ("oaep_unwrap", "RSA-OAEP unwrap"),
                 ("sign", "Ed25519 sign"), ("verify", "Ed25519 verify"),
                 ("room_10_full_exchange", "10-peer room, all pairs keyed")):
    if k in hs:
        v = hs[k]
        print(f"| handshake: {label} | {v:.3f} ms |" if v < 1 else f"| handshake: {label} | {v:.1f} ms |")
for k in ("datagram_write", "datagram_decode", "fragment_write", "fragment_decode"):
    r = get(f"proto_header/{k}")
    if r:
        print(f"| header {k.replace('_', ' ')} | {r['rate'] / 1e6:.0f} M pkt/s |")
PY
