# The soak: every agent carries checked traffic both ways for $minutes minutes (bpnet-guest soak: an echo
# and a bulk receive in turn, every byte compared) while faults are injected on a schedule, each on the
# next agent in turn: a chassis reset (the rig's HRESET), `bpctl reset` and `bpctl reset --hard`, a module
# reload under traffic, MTU changes (1500 -> 9000 -> 65535 -> 1500), a `bpctl flash` and a netboot, the
# agent's processor paused and resumed (ivshmem only: on mpc834x every BAR access is served by the
# emulator process itself, so a paused agent freezes the guest's accesses to it too), and random bytes
# written over the agent's shared region through its BAR. Each fault must be seen (the carrier's
# drop count, heartbeat_lost, the module's log and counters, bpctl's boot info) and healed (carrier up
# and two more of that agent's transfers complete, byte for byte, within $heal_s s). A transfer a fault
# cuts is restarted and counted as interrupted; a differing byte is corruption and fails the run. At
# the end: per-agent totals, corrupt 0, every fault healed, a clean kernel log, and the guest's slab
# and free memory, after the module is reloaded, within a tolerance of where they were before the
# traffic started. Figures go out as FIGURE lines (cargo xtask soak writes them to target/soak.json).
# Each agent has its identity record: agent n is 10.83.n.2, this host 10.83.n.1 on bpn (configure_slots).
last=$((agents - 1))
image=/lib/firmware/bpnet/bpnet-firmware.img
tftp_root=/srv/tftp
soak_dir=/tmp/soak
mkdir -p $soak_dir
# Bytes per transfer ($bytes from the harness): a transfer ends often enough to show progress within
# seconds on a full chassis.
transfer=$bytes
# The bound on healing: a full chassis shares two cores among twenty emulators and the guest.
heal_s=$((90 + 6 * agents))
# How long bpctl waits for an agent to come back after a reset, a flash or a netboot (its default is
# 180 s), for the same reason.
come_back_s=$((180 + 15 * agents))
# Memory tolerance, KiB (see the end of this script).
slab_tolerance=$((2048 + 128 * agents))
avail_tolerance=$((8192 + 512 * agents))

uptime_s() {
    cut -d. -f1 /proc/uptime
}

# Agent $1's soak traffic counter $2 (transfers, bytes_checked, interrupted, no_connection, corrupt).
traffic_of() {
    awk -v k="$2" 'NR == 1 { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' \
        $soak_dir/status$1 2>/dev/null
}

# bp$1 carries checked traffic again: carrier up, then two more of its transfers completed byte for byte
# (so at least one started after the fault), within $heal_s s.
flows_again() {
    t0=$(traffic_of $1 transfers)
    since=$(uptime_s)
    bpnet-guest carrier bp$1 up $heal_s > /dev/null || { echo "bp$1: no carrier within $heal_s s"; return 1; }
    while :; do
        t=$(traffic_of $1 transfers)
        if [ "${t:-0}" -ge $((${t0:-0} + 2)) ]; then
            echo "bp$1 carrier up, transfers $t0 -> $t in $(($(uptime_s) - since)) s"
            return 0
        fi
        if [ $(($(uptime_s) - since)) -ge $heal_s ]; then
            echo "bp$1: transfers still $t (from $t0) after $heal_s s: $(head -1 $soak_dir/status$1)"
            return 1
        fi
        sleep 1
    done
}

# Every agent's traffic flows again (after a module reload), each checked in parallel.
all_flow_again() {
    for i in $(seq 0 $last); do
        flows_again $i > $soak_dir/heal.$i 2>&1 &
        eval heal_pid$i=$!
    done
    bad=0
    for i in $(seq 0 $last); do
        eval wait \$heal_pid$i || { bad=$((bad + 1)); cat $soak_dir/heal.$i; }
    done
    [ $bad = 0 ] || return 1
    echo "all $agents agents: carrier up, checked traffic flowing again"
}

carrier_downs() {
    cat /sys/class/net/bp$1/carrier_down_count
}

# ---- the faults: each injects, prints what showed it, and fails if nothing did ----

# The chassis' HRESET of the agent (its emulator resets the board).
fault_chassis_reset() {
    downs=$(carrier_downs $1)
    out "REQUEST reset-agent $1"
    carrier_went_down $1 $downs 30
}

# `bpctl reset`: through the agent's control service (a soft reset).
fault_bpctl_reset() {
    downs=$(carrier_downs $1)
    text=$(bpctl reset --boot-timeout $come_back_s bp$1 2>&1) || { echo "bpctl reset: $text"; return 1; }
    echo "$text" | tail -1
    carrier_went_down $1 $downs 30
}

# `bpctl reset --hard`: through the BAR's boot block.
fault_bpctl_reset_hard() {
    downs=$(carrier_downs $1)
    text=$(bpctl reset --hard --boot-timeout $come_back_s bp$1 2>&1) || { echo "bpctl reset --hard: $text"; return 1; }
    echo "$text" | tail -1
    carrier_went_down $1 $downs 30
}

# rmmod while every agent carries traffic, then insmod: the netdevs go and come back.
fault_module_reload() {
    text=$(timeout 60 rmmod bpnet 2>&1) || { echo "rmmod under traffic: $text"; return 1; }
    left=$(ls /sys/class/net | grep -c '^bp')
    [ "$left" = 0 ] || { echo "$left bp netdevs left after rmmod"; return 1; }
    insmod /lib/modules/bpnet.ko $heartbeat_param || { echo "insmod failed"; return 1; }
    netdevs_appear || return 1
    configure_slots > /dev/null || { echo "configure_slots failed"; return 1; }
    echo "rmmod under traffic returned and every bp netdev went; insmod brought bp0..bp$last back"
}

# The MTU through 9000 and 65535 back to 1500: each change re-initialises the link (carrier down) and
# checked traffic must flow at each MTU.
fault_mtu() {
    for m in 9000 65535 1500; do
        downs=$(carrier_downs $1)
        ip link set bp$1 mtu $m || { echo "ip link set mtu $m failed"; return 1; }
        carrier_went_down $1 $downs 30 > /dev/null || { echo "MTU $m: carrier_down_count still $downs"; return 1; }
        [ "$(cat /sys/class/net/bp$1/mtu)" = $m ] || { echo "MTU $m: reads $(cat /sys/class/net/bp$1/mtu)"; return 1; }
        text=$(flows_again $1) || { echo "MTU $m: $text"; return 1; }
        printf 'MTU %s: link re-initialised, %s; ' $m "$text"
    done
    echo
}

# `bpctl flash`: the image written to the other slot; the agent comes back from it, confirmed.
fault_flash() {
    agent_addr=10.83.$1.2
    downs=$(carrier_downs $1)
    text=$(bpctl flash --boot-timeout $come_back_s bp$1 $image 2>&1) || { echo "bpctl flash: $(echo "$text" | tail -3)"; return 1; }
    echo "$text" | awk -v d=bp$1 '$1 == d && $2 == "ok" { f = 1 } END { exit !f }' ||
        { echo "no 'bp$1 ok' row: $text"; return 1; }
    carrier_went_down $1 $downs 30 || return 1
    back_up $1 > /dev/null || { echo "bp$1 not back after the flash"; return 1; }
    boots_as $1 'flash/[AB]' yes
}

# `bpctl boot`: a netboot from this guest's TFTP server.
fault_netboot() {
    agent_addr=10.83.$1.2
    downs=$(carrier_downs $1)
    text=$(bpctl boot --boot-timeout $come_back_s --tftp-root $tftp_root bp$1 $image 2>&1) || { echo "bpctl boot: $(echo "$text" | tail -3)"; return 1; }
    carrier_went_down $1 $downs 30 || return 1
    back_up $1 > /dev/null || { echo "bp$1 not back after the netboot"; return 1; }
    boots_as $1 netboot any
}

# The agent's processor stops (its emulator frozen) for longer than the heartbeat bound: the carrier
# drops and heartbeat_lost counts it; then it runs again.
fault_pause() {
    lost=$(stat_of $1 heartbeat_lost)
    out "REQUEST pause-agent $1"
    text=$(bpnet-guest carrier bp$1 down $((heartbeat_ms / 1000 + 15)) 2>&1)
    rc=$?
    for _ in $(seq 20); do
        now=$(stat_of $1 heartbeat_lost)
        [ "${now:-0}" -gt "${lost:-0}" ] && break
        sleep 0.5
    done
    out "REQUEST resume-agent $1"
    echo "$text; heartbeat_lost $lost -> $now"
    [ $rc = 0 ] && [ "${now:-0}" -gt "${lost:-0}" ]
}

# Random bytes over the first 4 KiB of the agent's shared region (header, doorbells, boot block) through
# its BAR while its link is down: the next set-up finds the contract broken, logs it and asks the agent
# to reset.
fault_scribble() {
    dev=$(agent_devices | sed -n "$(($1 + 1))p")
    marks=$(dmesg | wc -l)
    asked=$(stat_of $1 reset_requests)
    ip link set bp$1 down
    sleep 1
    text=$(bpnet-guest scribble $dev $(shared_bar) 4096 2>&1)
    rc=$?
    ip link set bp$1 up
    [ $rc = 0 ] || { echo "scribble: $text"; return 1; }
    for _ in $(seq 60); do
        said=$(dmesg | tail -n +$((marks + 1)) | grep "bp$1: agent broke the contract" | head -1)
        now=$(stat_of $1 reset_requests)
        if [ -n "$said" ] || [ "${now:-0}" -gt "${asked:-0}" ]; then
            echo "$text; ${said#*] }; reset_requests $asked -> $now"
            return 0
        fi
        sleep 0.5
    done
    echo "$text; nothing in the log and reset_requests still $asked after 30 s"
    return 1
}

faults_injected=0
faults_healed=0
# run_fault K KIND N: fault K of kind KIND on agent N, seen and healed; one result.
run_fault() {
    k=$1
    kind=$2
    n=$3
    name="fault$k-$(echo $kind | tr _ -)-agent$n"
    [ $kind = module_reload ] && name="fault$k-module-reload"
    faults_injected=$((faults_injected + 1))
    since=$(uptime_s)
    if ! seen=$(fault_$kind $n 2>&1); then
        result "$name" fail "not seen: $seen"
        # Whatever it did, the next fault starts from a working link if it can.
        [ $kind = module_reload ] && { lsmod | grep -q '^bpnet' || insmod /lib/modules/bpnet.ko $heartbeat_param; configure_slots; }
        return
    fi
    if [ $kind = module_reload ]; then
        healed=$(all_flow_again 2>&1)
    else
        healed=$(flows_again $n 2>&1)
    fi
    rc=$?
    took=$(($(uptime_s) - since))
    if [ $rc = 0 ]; then
        faults_healed=$((faults_healed + 1))
        result "$name" pass "seen: $seen | healed in $took s: $healed"
    else
        result "$name" fail "seen: $seen | not healed: $healed"
    fi
}

memory_snapshot() {
    # Clean page cache and reclaimable slab (dentries, inodes) are not the module's: dropped first.
    sync
    echo 3 > /proc/sys/vm/drop_caches
    sleep 2
    for key in Slab SUnreclaim MemFree MemAvailable; do
        eval "$1_$key=$(sed -n "s/^$key: *\([0-9]*\) kB$/\1/p" /proc/meminfo)"
    done
    eval "echo Slab \$$1_Slab KiB, SUnreclaim \$$1_SUnreclaim KiB, MemFree \$$1_MemFree KiB, MemAvailable \$$1_MemAvailable KiB"
}

version=$(image_version $image)
heartbeat_bound
if ! check module-load insmod /lib/modules/bpnet.ko $heartbeat_param; then
    check kernel-log-clean kernel_log_clean
    return 0 2>/dev/null || exit 0
fi
check netdevs netdevs_appear
check configure configure_slots
check tftp-server tftp_server
for i in $(seq 0 $last); do
    check "agent$i-carrier-up" bpnet-guest carrier bp$i up 60
    agent_addr=10.83.$i.2
    check "agent$i-answers" agent_answers $i
done
memory_snapshot before > $soak_dir/memory.before
result memory-before pass "$(cat $soak_dir/memory.before)"

kinds="chassis_reset bpctl_reset bpctl_reset_hard module_reload mtu flash netboot pause scribble"
if [ "$personality" = mpc834x ]; then
    kinds=$(echo $kinds | sed 's/ pause//')
    out "SAY soak: on mpc834x the pause fault is not injected (a paused agent's emulator serves its BARs, so the guest's accesses to it would freeze too)"
fi
nkinds=$(echo $kinds | wc -w)

rm -f $soak_dir/stop
for i in $(seq 0 $last); do
    bpnet-guest soak bp$i 10.83.$i.2 $transfer $soak_dir/stop $soak_dir/status$i > $soak_dir/final$i 2>&1 &
    eval traffic_pid$i=$!
done
check traffic-flowing all_flow_again

# One fault every period, the kinds in turn, each on the next agent; at least one of each kind, and
# faults go on until $minutes minutes have passed.
period=$((minutes * 60 / nkinds))
[ $period -lt 1 ] && period=1
started=$(uptime_s)
k=0
while [ $k -lt $nkinds ] || [ $(($(uptime_s) - started)) -lt $((minutes * 60)) ]; do
    kind=$(echo $kinds | cut -d' ' -f$((k % nkinds + 1)))
    run_fault $k $kind $((k % agents))
    k=$((k + 1))
    while [ $(uptime_s) -lt $((started + k * period)) ] && [ $(($(uptime_s) - started)) -lt $((minutes * 60)) ]; do
        sleep 1
    done
done
ran=$(($(uptime_s) - started))
result soak-duration pass "$ran s of traffic under faults ($minutes min asked), $faults_injected faults"

touch $soak_dir/stop
for i in $(seq 0 $last); do
    eval wait \$traffic_pid$i
done
total_checked=0
total_corrupt=0
total_interrupted=0
for i in $(seq 0 $last); do
    t=$(traffic_of $i transfers)
    c=$(traffic_of $i bytes_checked)
    x=$(traffic_of $i corrupt)
    r=$(traffic_of $i interrupted)
    detail="transfers=$t bytes_checked=$c interrupted=$r no_connection=$(traffic_of $i no_connection) corrupt=$x"
    if [ -z "$t" ] || [ -z "$x" ]; then
        result "agent$i-traffic" fail "no totals: $(cat $soak_dir/final$i)"
        continue
    fi
    total_checked=$((total_checked + c))
    total_corrupt=$((total_corrupt + x))
    total_interrupted=$((total_interrupted + r))
    out "FIGURE soak_agent${i}_bytes_checked $c"
    out "FIGURE soak_agent${i}_transfers $t"
    out "FIGURE soak_agent${i}_interrupted $r"
    out "FIGURE soak_agent${i}_corrupt $x"
    if [ "$x" != 0 ]; then
        result "agent$i-traffic" fail "$detail; first: $(sed -n 2p $soak_dir/status$i)"
    elif [ "$t" -lt 2 ]; then
        result "agent$i-traffic" fail "$detail: hardly any traffic"
    else
        result "agent$i-traffic" pass "$detail"
    fi
done

# Memory: the module reloaded and every link up again, as before the traffic started.
check rmmod-at-end timeout 60 rmmod bpnet
check insmod-at-end insmod /lib/modules/bpnet.ko $heartbeat_param
check netdevs-at-end netdevs_appear
check configure-at-end configure_slots
for i in $(seq 0 $last); do
    check "agent$i-carrier-up-at-end" bpnet-guest carrier bp$i up 60
done
memory_snapshot after > $soak_dir/memory.after
# What the soak may leave behind, KiB: the kernel keeps partly used slabs in every cache (SUnreclaim)
# and per-CPU lists of free pages, and TCP sockets of the last minute wait in TIME_WAIT; none of that
# grows with the run's length. A leak per packet, per transfer or per fault does: 20 agents moving
# gigabytes leave megabytes behind for a few bytes leaked per frame, and one leaked RX ring (posted
# buffers: up to 4 MiB per agent) per reload or reset is more than the tolerance on its own.
slab_growth=$((after_SUnreclaim - before_SUnreclaim))
avail_drop=$((before_MemAvailable - after_MemAvailable))
free_drop=$((before_MemFree - after_MemFree))
leak=0
[ $slab_growth -gt $leak ] && leak=$slab_growth
[ $avail_drop -gt $leak ] && leak=$avail_drop
memory="SUnreclaim $before_SUnreclaim -> $after_SUnreclaim KiB (grown $slab_growth, at most $slab_tolerance), MemAvailable $before_MemAvailable -> $after_MemAvailable KiB (fallen $avail_drop, at most $avail_tolerance), Slab $before_Slab -> $after_Slab KiB, MemFree $before_MemFree -> $after_MemFree KiB"
if [ $slab_growth -le $slab_tolerance ] && [ $avail_drop -le $avail_tolerance ]; then
    result memory-back pass "$memory"
else
    result memory-back fail "$memory"
fi
out "FIGURE soak_leak_kib $leak"
out "FIGURE soak_sunreclaim_growth_kib $slab_growth"
out "FIGURE soak_memavailable_drop_kib $avail_drop"
out "FIGURE soak_seconds $ran"
out "FIGURE soak_bytes_checked $total_checked"
out "FIGURE soak_corrupt $total_corrupt"
out "FIGURE soak_interrupted $total_interrupted"
out "FIGURE soak_faults_injected $faults_injected"
out "FIGURE soak_faults_healed $faults_healed"
if [ $total_corrupt = 0 ]; then
    result no-corruption pass "$total_checked bytes checked on $agents agents, none differed ($total_interrupted transfers cut by faults and restarted)"
else
    result no-corruption fail "$total_corrupt transfers with differing bytes among $total_checked bytes checked"
fi
if [ $faults_healed = $faults_injected ] && [ $faults_injected -ge $nkinds ]; then
    result faults-healed pass "$faults_healed of $faults_injected faults seen and healed ($nkinds kinds: $kinds)"
else
    result faults-healed fail "$faults_healed of $faults_injected faults seen and healed, at least $nkinds wanted"
fi
kill "$(cat /tmp/tftpd.pid)" 2>/dev/null
check kernel-log-clean kernel_log_clean
