#!/bin/sh
# Rebuild fuzz/seeds/ (the starting corpora, kept in the repo) from the
# repo's sample files, with the daxtrace binary given as $1 (default: the
# debug build). Seeds stay small (a few KiB): libFuzzer's -max_len defaults
# to the largest seed, and small inputs mutate fastest.
#
#   jsonl_reader:     every scenario, the sample race (first 60 lines),
#                     a few odd lines (CRLF, blank, not UTF-8, unknown kind).
#   tracefile_reader: each of those exported to a trace file; a recorded file
#                     with several chunks, stats records and a footer; the
#                     same cut inside a chunk, with a flipped byte, with a
#                     chunk removed, of version 2; a raw event payload.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=${1:-${CARGO_TARGET_DIR:-$repo/target}/debug/daxtrace}
j=$here/seeds/jsonl_reader
t=$here/seeds/tracefile_reader
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$j" "$t"
mkdir -p "$j" "$t"

for f in "$repo"/tracer/tests/scenarios/*.jsonl; do
    case $f in *.expected.jsonl) continue ;; esac
    n=$(basename "$f" .jsonl)
    cp "$f" "$j/$n.jsonl"
    "$bin" export --format daxtrace -o "$t/$n.dxt" "$f" 2>/dev/null
done
head -n 60 "$repo/examples/race.jsonl" >"$j/race-head.jsonl"
printf '{"ts":1,"kind":"lost","count":3}\r\n\r\n{"ts":2,"kind":"nope"}\n' >"$j/crlf-and-bad.jsonl"
printf '{"ts":1,"comm":"\\u00e9t\\u00e9-r\\u00e9sum\\u00e9","kind":"fault_end","fault":1,"result":"weird"}\n\377\376\n' >"$j/unicode-and-binary.jsonl"
printf '{"ts":5,"probe":"iomap:iomap_iter_dstmap","dev":"7:0","ino":1,"kind":"map_blocks","fault":null,"pgoff":0,"npages":18446744073709551615,"result":"unwritten","new":true,"write":true}\n' >"$j/probe-and-extremes.jsonl"

# Several chunks, stats records and a footer: a paced replay (chunks are
# cut every second).
# A replay is paced every 256 events: 800 events at 250/s take about 3 s.
"$bin" simulate --seed 2 --schedules 50 --without pmd_read,pmd_write -o "$tmp/sim.jsonl" >/dev/null || true
"$bin" record --replay "$tmp/sim.jsonl" --replay-rate 250 -o "$tmp/rec.dxt" 2>/dev/null
cp "$tmp/rec.dxt" "$t/recorded.dxt"
cp "$repo/examples/race.dxt" "$t/race.dxt"
python3 - "$tmp/rec.dxt" "$t" <<'EOF'
import struct, sys, subprocess
src, out = sys.argv[1], sys.argv[2]
b = open(src, "rb").read()
hlen = struct.unpack_from("<I", b, 12)[0]
starts, pos = [], 20 + hlen
while pos < len(b):
    assert b[pos:pos + 4] == b"DXCK"
    starts.append(pos)
    pos += 28 + struct.unpack_from("<I", b, pos + 8)[0]
assert len(starts) >= 3, starts
open(f"{out}/cut-in-chunk.dxt", "wb").write(b[: starts[1] + 40])
flip = bytearray(b); flip[starts[0] + 40] ^= 0x10
open(f"{out}/flipped.dxt", "wb").write(flip)
open(f"{out}/chunk-removed.dxt", "wb").write(b[: starts[0]] + b[starts[1]:])
v2 = bytearray(b); v2[8] = 2
open(f"{out}/version-2.dxt", "wb").write(v2[: starts[1]])
# The first event chunk's payload, decompressed: what decode_events sees.
s = starts[0]
stored = struct.unpack_from("<I", b, s + 8)[0]
raw = subprocess.run(["zstd", "-dc"], input=b[s + 28 : s + 28 + stored], capture_output=True, check=True).stdout
open(f"{out}/raw-event-payload.bin", "wb").write(raw)
EOF
ls -l "$j" "$t" | awk 'NR > 1 { s += $5 } END { print "seeds: " s " bytes" }'
