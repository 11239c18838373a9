#!/bin/bash
# usage: docs/bench/top-ratio.sh FILE ROUNDS BIN...   (docs/performance.md, issue 7)
# Per round and build: one `BIN analyze FILE` (wall and CPU from /usr/bin/time) and one
# `BIN top --replay FILE --speed 0` in tmux 200x50 ("done in" read from the screen, CPU
# user+sys from /proc/PID/stat when it shows), in alternating order (odd rounds analyze
# first, even rounds top first), builds interleaved within each round. Prints each pair,
# then per build the median and range of the rate ratio top/analyze and of the CPU ratio.
F=$1; R=$2; shift 2
N=$($1 analyze --json "$F" | tail -1 | grep -o '"events":[0-9]*' | cut -d: -f2)
declare -A rs cs
an() {
  local a; a=$( { /usr/bin/time -f "%e %U %S" $1 analyze "$F" >/dev/null; } 2>&1 | tail -1)
  aw=$(echo $a | cut -d' ' -f1); ac=$(echo "$(echo $a | cut -d' ' -f2) + $(echo $a | cut -d' ' -f3)" | bc)
}
tp() {
  local S=tr$$ out= pid st
  local T="tmux -L $S -f /dev/null"
  $T new-session -d -s x -x 200 -y 50 "$1 top --replay $F --speed 0"
  for i in $(seq 1 1200); do
    out=$($T capture-pane -p -t x 2>/dev/null | grep -o "done in [0-9.]*s" | head -1)
    [ -n "$out" ] && break; sleep 0.25
  done
  pid=$(pgrep -f "^$1 top --replay $F" | head -1)
  st=$(awk '{print $14, $15}' /proc/$pid/stat)
  $T send-keys -t x q; sleep 1.5; $T kill-server 2>/dev/null
  tw=$(echo "$out" | grep -o "[0-9.]*" | head -1)
  tc=$(echo "($(echo $st | cut -d' ' -f1) + $(echo $st | cut -d' ' -f2)) / $(getconf CLK_TCK)" | bc -l)
}
for r in $(seq 1 $R); do
  for B in "$@"; do
    if [ $((r % 2)) = 1 ]; then an $B; tp $B; else tp $B; an $B; fi
    ratio=$(echo "100*$aw/$tw" | bc -l); cr=$(echo "$tc/$ac" | bc -l)
    rs[$B]+="$ratio "; cs[$B]+="$cr "
    printf "round %d %-10s analyze %.2fs (%.2f M/s, CPU %.2fs)  top %.2fs (%.2f M/s, CPU %.2fs)  ratio %.0f%%  CPU ratio %.2f  load %s\n" \
      $r $(basename $B) $aw $(echo "$N/$aw/1000000" | bc -l) $ac $tw $(echo "$N/$tw/1000000" | bc -l) $tc $ratio $cr "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
for B in "$@"; do
  printf "%-10s rate ratio: " $(basename $B)
  printf "%s\n" ${rs[$B]} | sort -n | awk '{a[NR]=$1} END {printf "median %.0f%% (range %.0f%%-%.0f%%)", a[int((NR+1)/2)], a[1], a[NR]}'
  printf "; CPU top/analyze: "
  printf "%s\n" ${cs[$B]} | sort -n | awk '{a[NR]=$1} END {printf "median %.2f (range %.2f-%.2f) over %d rounds\n", a[int((NR+1)/2)], a[1], a[NR], NR}'
done
