# bench-overhead in the lab guest (xtask/src/bench/lab.rs): sourced by the
# lab's /init (guest.sh) after boot when the kernel command line says
# lab.bench=1. The host put trace-cmd, bpftrace and their libraries in
# /share/bench; each run's figures go to /share/bench/out/<round>-<config>/.
#
#   lab.benchrounds=N  lab.configs=untraced,daxtrace,trace-cmd,bpftrace
#   lab.rounds / lab.pages / lab.passes: the racing workload per run (lab-workload)
#   lab.bpfstats=1: kernel accounting of the tracer's eBPF programs during the workload

B=/share/bench
BR=3 CONFIGS=untraced,daxtrace,trace-cmd,bpftrace BPFSTATS=0
for w in $(cat /proc/cmdline); do
    case "$w" in
    lab.bpfstats=*) BPFSTATS=${w#lab.bpfstats=} ;;
    lab.benchrounds=*) BR=${w#lab.benchrounds=} ;;
    lab.configs=*) CONFIGS=${w#lab.configs=} ;;
    esac
done
TC="env LD_LIBRARY_PATH=$B/lib $B/bin/trace-cmd"
BT="env LD_LIBRARY_PATH=$B/lib BPFTRACE_STRLEN=16 $B/bin/bpftrace"
NCPU=$(grep -c ^processor /proc/cpuinfo)
NPROBES=$(wc -l < $B/events)

/usr/sbin/mkfs.ext4 -q -F -b 4096 -E stride=512,stripe_width=512 /dev/pmem0 > /tmp/mkfs.log 2>&1 || fail "mkfs.ext4"
mount -t ext4 -o dax /dev/pmem0 /mnt || fail "mount ext4 -o dax"
cat /sys/block/pmem0/dev > $B/dev
# The A/B binary runs from memory like the initramfs's, not paged in over 9p.
[ -f $B/bin/daxtrace-before ] && cp $B/bin/daxtrace-before /tmp/daxtrace-before

# wait_for PID FILE PATTERN [FDS]: until FILE has PATTERN (and, with FDS,
# PID holds at least FDS perf-event descriptors); 1 if PID dies or 300 s pass.
wait_for() {
    i=0
    while [ $i -lt 15000 ]; do
        kill -0 "$1" 2>/dev/null || return 1
        if grep -q "$3" "$2" 2>/dev/null; then
            [ -z "$4" ] && return 0
            [ "$(ls -l /proc/"$1"/fd 2>/dev/null | grep -c perf_event)" -ge "$4" ] && return 0
        fi
        i=$((i + 1))
        sleep 0.02
    done
    return 1
}

# cpu_ticks PID: CPU used so far by PID and its children (trace-cmd records
# in one child per CPU), clock ticks (1/100 s). No comm here has a space.
cpu_ticks() {
    # cat, not awk on the files: a process gone meanwhile must not end the sum.
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '$1 == p || $4 == p { t += $14 + $15 } END { print t + 0 }'
}

# bpf_stats PID: "name runs ns" for each eBPF program PID holds that ran
# while kernel.bpf_stats_enabled was on; the name from the JIT's kallsyms
# entry (bpf_prog_<tag>_<name>), the tag when there is none.
bpf_stats() {
    # kallsyms is 100,000+ lines the kernel formats on each read: once.
    grep " bpf_prog_" /proc/kallsyms > /tmp/bpf.syms
    for f in /proc/"$1"/fdinfo/*; do
        awk '$1 == "prog_tag:" { t = $2 } $1 == "run_time_ns:" { ns = $2 } $1 == "run_cnt:" { n = $2 } END { if (n > 0) print t, n, ns }' "$f" 2>/dev/null
    done | while read -r tag n ns; do
        name=$(grep -m1 " bpf_prog_${tag}_" /tmp/bpf.syms | sed "s/.* bpf_prog_${tag}_//;s/[[:space:]].*//")
        echo "${name:-$tag} $n $ns"
    done
}

run_one() {
    r=$1 cfg=$2
    o=$B/out/$r-$cfg
    mkdir -p "$o" /mnt/w
    pid=
    t0=$(up)
    case $cfg in
    untraced) ;;
    daxtrace*)
        # daxtrace[-BACKEND][@before]: @before runs the A/B binary (copied from the share).
        dt=daxtrace name=${cfg%@before}
        [ "$name" != "$cfg" ] && dt=/tmp/daxtrace-before
        backend=auto
        [ "$name" != daxtrace ] && backend=${name#daxtrace-}
        # Its start-up phases (tracer::attach at debug) go into tool.out too.
        DAXTRACE_LOG=tracer::attach=debug $dt record --backend $backend -o /tmp/dt.dxt > /tmp/tool.out 2>&1 &
        pid=$!
        wait_for $pid /tmp/tool.out " attached in" || say "bench daxtrace did not attach"
        ;;
    trace-cmd)
        $TC record $(sed 's/^/-e /' $B/events) -o /tmp/trace.dat > /tmp/tool.out 2>&1 &
        pid=$!
        # Its "Hit Ctrl^C" line is stuck in stdio's buffer until exit (no
        # stdbuf in busybox): ready once it has enabled the events.
        wait_for $pid $T/events/iomap/iomap_iter_dstmap/enable 1 || say "bench trace-cmd did not start"
        ;;
    bpftrace)
        $BT $B/count.bt > /tmp/tool.out 2>&1 &
        pid=$!
        wait_for $pid /tmp/tool.out "Attaching" $((NPROBES + NCPU)) || say "bench bpftrace did not attach"
        ;;
    esac
    t1=$(up)
    stats=
    [ "$BPFSTATS" = 1 ] && [ -n "$pid" ] && [ "$cfg" != trace-cmd ] && stats=1
    [ -n "$stats" ] && echo 1 > /proc/sys/kernel/bpf_stats_enabled
    lab-workload --dir /mnt/w --rounds "$ROUNDS" --pages "$PAGES" --passes "$PASSES" > "$o/workload.json" 2> "$o/workload.err"
    echo $? > "$o/workload.rc"
    t2=$(up)
    if [ -n "$stats" ]; then
        bpf_stats $pid > "$o/bpf.stats"
        echo 0 > /proc/sys/kernel/bpf_stats_enabled
    fi
    if [ -n "$pid" ]; then
        cpu_ticks $pid > "$o/tool.cpu"
        kill -INT $pid
        wait $pid
        echo $? > "$o/tool.rc"
    fi
    t3=$(up)
    # trace-cmd leaves its events enabled: later runs would pay for them.
    [ "$cfg" = trace-cmd ] && echo 0 > $T/events/enable
    echo "$t0 $t1 $t2 $t3" > "$o/times"
    [ -f /tmp/tool.out ] && dd if=/tmp/tool.out of="$o/tool.out" bs=1M 2>/dev/null
    [ -f /tmp/dt.dxt ] && stat -c %s /tmp/dt.dxt > "$o/file.size"
    [ -f /tmp/trace.dat ] && dd if=/tmp/trace.dat of="$o/trace.dat" bs=1M 2>/dev/null
    rm -rf /mnt/w /tmp/dt.dxt /tmp/trace.dat /tmp/tool.out
    sync
    say "bench round $r $cfg: ready $(awk "BEGIN{print $t1-$t0}")s, workload $(awk "BEGIN{print $t2-$t1}")s"
}

rm -rf $B/out
mkdir -p $B/out
set -- $(echo "$CONFIGS" | tr , ' ')
n=$#
r=1
while [ $r -le "$BR" ]; do
    # Rotate the order each round: no config always runs first.
    k=0
    while [ $k -lt $n ]; do
        j=$(((k + r - 1) % n + 1))
        eval "cfg=\${$j}"
        run_one $r "$cfg"
        k=$((k + 1))
    done
    r=$((r + 1))
done
umount /mnt
say ok
sync
poweroff -f
