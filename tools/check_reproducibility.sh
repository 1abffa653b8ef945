#!/usr/bin/env bash
# Same seed twice -> bit-identical weights; a run killed mid-way (SIGKILL) and resumed -> the
# same weights as an uninterrupted run. Prints the sha256 of the three weight files.
#   tools/check_reproducibility.sh [MODEL] [KILL_AFTER_SECONDS]
set -euo pipefail
model=${1:-mae-mnist}
kill_after=${2:-12}
bin=$(dirname "$0")/../.venv/bin
out=$(mktemp -d)
args=(unlearn --model "$model" --forget 0 1 2 --method ours --checkpoint-every 50 --quiet)
"$bin/i2i-unlearn" "${args[@]}" --out "$out/first"
"$bin/i2i-unlearn" "${args[@]}" --out "$out/second"
timeout -s KILL "$kill_after" "$bin/i2i-unlearn" "${args[@]}" --out "$out/killed" || true
echo "killed after ${kill_after}s at step $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$out/killed/checkpoint/state.json" 2>/dev/null || echo '?')"
"$bin/i2i-unlearn" "${args[@]}" --out "$out/killed" --resume
sha256sum "$out/first/model.safetensors" "$out/second/model.safetensors" "$out/killed/model.safetensors"
n=$(sha256sum "$out"/*/model.safetensors | cut -d' ' -f1 | sort -u | wc -l)
[ "$n" = 1 ] && echo "OK: all three are bit-identical" || { echo "MISMATCH"; exit 1; }
