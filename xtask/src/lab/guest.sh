#!/bin/busybox sh
# /init of the lab guest (built by xtask/src/lab/initramfs.rs).
#
# Parameters come on the kernel command line:
#   lab.runs=ext4:tracepoint,xfs:kprobe  (filesystem:daxtrace backend, in order)
#   lab.rounds=N  lab.pages=N  lab.passes=N  lab.bufkb=KB  lab.daxtrace=0|1
#   lab.latemount=0|1  (start daxtrace before mounting the DAX filesystem)
# Everything the host compares goes to /share/<fs>-<backend>/ (9p). The host
# reads the console for `daxtrace-lab: ...` progress lines and exactly one
# verdict: `daxtrace-lab: ok` or `daxtrace-lab: fail <why>`.

/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs dev /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tracefs tracefs /sys/kernel/tracing

say() { echo "daxtrace-lab: $*"; }
fail() {
    say "fail $*"
    sync
    poweroff -f
}
up() { cut -d' ' -f1 /proc/uptime; }

RUNS=ext4:tracepoint,xfs:tracepoint ROUNDS=10 PAGES=1024 PASSES=4 BUFKB=32768 DAXTRACE=1 LATEMOUNT=0
for w in $(cat /proc/cmdline); do
    case "$w" in
    lab.runs=*) RUNS=${w#lab.runs=} ;;
    lab.rounds=*) ROUNDS=${w#lab.rounds=} ;;
    lab.pages=*) PAGES=${w#lab.pages=} ;;
    lab.passes=*) PASSES=${w#lab.passes=} ;;
    lab.bufkb=*) BUFKB=${w#lab.bufkb=} ;;
    lab.daxtrace=*) DAXTRACE=${w#lab.daxtrace=} ;;
    lab.latemount=*) LATEMOUNT=${w#lab.latemount=} ;;
    esac
done

for m in $(cat /lab/modules); do
    insmod /lib/modules/$m || fail "insmod $m"
done
mkdir -p /share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /share || fail "mount 9p share"
i=0
while [ ! -b /dev/pmem0 ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && fail "no /dev/pmem0 (is memmap=512M!1G on the kernel command line?)"
    sleep 0.1
done
uname -r > /share/uname
dmesg > /share/dmesg
say "ready $(uname -r) at $(up)s"

T=/sys/kernel/tracing
echo mono > $T/trace_clock
I=$T/instances/lab

# cargo xtask bench-overhead --setting lab: its own script, from the share.
case " $(cat /proc/cmdline) " in *" lab.bench=1 "*) . /share/bench/bench.sh ;; esac

# daxtrace is ready once it says so on stderr ("... tracepoints attached
# in ..."); should that line ever change, fall back to its count of
# perf-event/bpf-link descriptors, non-zero and still for a second.
wait_attached() {
    pid=$1 err=$2 prev=-1 n=0 i=0
    while [ $i -lt 480 ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        grep -q " attached" "$err" 2>/dev/null && return 0
        if [ $((i % 4)) = 3 ]; then
            n=$(ls -l /proc/"$pid"/fd 2>/dev/null | grep -c -e perf_event -e bpf_link)
            if [ "$n" -gt 0 ] && [ "$n" = "$prev" ]; then
                return 0
            fi
            prev=$n
        fi
        i=$((i + 1))
        sleep 0.25
    done
    return 1
}

run_fs() {
    fs=$1 backend=$2
    # Progress lines name the run (fs-backend): the host keys timings on it.
    run=$fs-$backend
    out=/share/$run
    rm -rf "$out"
    mkdir -p "$out"
    say "fs $run mkfs at $(up)s"
    case $fs in
    ext4)
        /usr/sbin/mkfs.ext4 -q -F -b 4096 -E stride=512,stripe_width=512 /dev/pmem0 > "$out/mkfs.log" 2>&1 || fail "mkfs.ext4"
        mnt="mount -t ext4 -o dax /dev/pmem0 /mnt"
        ;;
    xfs)
        # 2 MiB stripe unit so PMD write faults do not fall back to PTE;
        # on 512 MiB that needs two allocation groups and a small log stripe.
        /usr/sbin/mkfs.xfs -q -f -m reflink=0 -d su=2m,sw=1,agcount=2 -l su=32k /dev/pmem0 > "$out/mkfs.log" 2>&1 || fail "mkfs.xfs"
        mnt="mount -t xfs -o dax=always /dev/pmem0 /mnt"
        ;;
    *) fail "unknown filesystem $fs" ;;
    esac
    majmin=$(cat /sys/block/pmem0/dev)
    started=0
    if [ "$DAXTRACE" = 1 ] && [ "$LATEMOUNT" = 1 ]; then
        # daxtrace first, the DAX mount after: it must see the mount and
        # attach iomap:iomap_iter then (it polls mountinfo once a second).
        t=$(up)
        daxtrace stream --json --dev "$majmin" --backend "$backend" --plan-json "$out/plan.json" > /tmp/events.jsonl 2> "$out/daxtrace.err" &
        dt=$!
        wait_attached $dt "$out/daxtrace.err" || say "daxtrace did not attach (see $run/daxtrace.err)"
        say "fs $run daxtrace attached in $(awk "BEGIN{print $(up)-$t}")s, before the mount"
        started=1
    fi
    $mnt || fail "$mnt"
    grep " /mnt " /proc/mounts > "$out/mount"
    if [ $started = 1 ]; then
        i=0
        while [ $i -lt 120 ] && ! grep -q "mounted now: attached" "$out/daxtrace.err"; do
            i=$((i + 1))
            sleep 0.25
        done
        say "fs $run after the mount: $(grep "mounted now" "$out/daxtrace.err" || echo "daxtrace did not attach iomap:iomap_iter within 30 s")"
    fi
    maj=${majmin%:*}
    min=${majmin#*:}
    kdev=$(((maj << 20) | min))
    echo "$majmin" > "$out/dev"

    # The kernel's own record: a separate instance on the same tracepoints.
    [ -d $I ] && rmdir $I
    mkdir $I || fail "cannot create tracefs instance"
    echo 0 > $I/tracing_on
    echo mono > $I/trace_clock
    echo "$BUFKB" > $I/buffer_size_kb || fail "buffer_size_kb $BUFKB"
    # No comm recording: with it, enabling and disabling the instance's
    # events registers and unregisters a sched_switch probe, live-patching
    # __schedule, which every vCPU runs all the time; multi-threaded TCG
    # once ran that patch stale (an int3 oops in __schedule). Lines then
    # read "<...>-TID"; the host needs only the TID.
    echo 0 > $I/options/record-cmd 2>/dev/null
    : > "$out/absent"
    for ev in $(cat /lab/events); do
        d=$I/events/${ev%%:*}/${ev#*:}
        if [ ! -d "$d" ]; then
            echo "$ev" >> "$out/absent"
            continue
        fi
        echo "dev == $kdev" > "$d/filter" 2>/dev/null || echo "$ev" >> "$out/nofilter"
        echo 1 > "$d/enable" || fail "enable $ev"
    done

    if [ "$DAXTRACE" = 1 ] && [ $started = 0 ]; then
        t=$(up)
        daxtrace stream --json --dev "$majmin" --backend "$backend" --plan-json "$out/plan.json" > /tmp/events.jsonl 2> "$out/daxtrace.err" &
        dt=$!
        wait_attached $dt "$out/daxtrace.err" || say "daxtrace did not attach (see $run/daxtrace.err)"
        say "fs $run daxtrace attached in $(awk "BEGIN{print $(up)-$t}")s"
    fi

    echo 1 > $I/tracing_on
    echo lab-start > $I/trace_marker
    say "fs $run workload start at $(up)s"
    mkdir -p /mnt/w
    lab-workload --dir /mnt/w --rounds "$ROUNDS" --pages "$PAGES" --passes "$PASSES" > "$out/workload.json" 2> "$out/workload.err"
    echo $? > "$out/workload.rc"
    rm -rf /mnt/w
    sync
    echo lab-end > $I/trace_marker
    echo 0 > $I/tracing_on
    say "fs $run workload end at $(up)s: $(cat "$out/workload.json")"

    if [ "$DAXTRACE" = 1 ]; then
        kill -INT $dt 2>/dev/null
        wait $dt
        echo $? > "$out/daxtrace.rc"
        say "fs $run daxtrace stopped at $(up)s"
        # The host checks each copy's size (a full host disk cut one short).
        wc -c < /tmp/events.jsonl > "$out/events.jsonl.size"
        dd if=/tmp/events.jsonl of="$out/events.jsonl" bs=1M 2>/dev/null
        rm -f /tmp/events.jsonl
    fi
    cat $I/per_cpu/cpu*/stats > "$out/kernel.stats"
    say "fs $run reading the kernel trace at $(up)s"
    # Large blocks: 9p pays a round trip per write, tracefs per read.
    dd if=$I/trace of=/tmp/kernel.trace bs=1M 2>/dev/null
    say "fs $run copying at $(up)s"
    wc -c < /tmp/kernel.trace > "$out/kernel.trace.size"
    dd if=/tmp/kernel.trace of="$out/kernel.trace" bs=1M 2>/dev/null
    rm /tmp/kernel.trace
    for ev in $(cat /lab/events); do
        d=$I/events/${ev%%:*}/${ev#*:}
        [ -d "$d" ] && echo 0 > "$d/enable"
    done
    rmdir $I
    umount /mnt || fail "umount $fs"
    say "fs $run copied out at $(up)s"
}

for r in $(echo "$RUNS" | tr , ' '); do
    run_fs "${r%%:*}" "${r#*:}"
done
sync
say ok
poweroff -f
