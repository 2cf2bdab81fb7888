# The virtual backplane's figures for `cargo xtask bench` (one agent): TCP throughput host -> agent (the
# agent's discard service) and agent -> host (its sized bulk send, every byte checked against the pattern),
# $bytes each way, through bpnet.ko; and notifications per packet (the module's doorbells + interrupts over
# its tx_frames + rx_frames, from ethtool -S) over both transfers. All of it twice in the same boot: with
# every feature, then with the module withholding BPNET_F_EVENT_INDEX (offer_features), so notification
# suppression is off. Figures go to the results port as `FIGURE key value` lines, which the harness leaves
# to `cargo xtask bench`; every step is also a check. Times are the guest's wall clock.
# Also the fast path's BAR reads per packet (the module's host_bar_reads - host_bar_reads_slow_path over
# tx_frames + rx_frames): none on ivshmem, at most the one ODR read per interrupt on mpc834x. Per packet
# that is 1/64 or less only when the agent is saturated (bpnet-netbench: 0.015); the TCG guest here
# rarely keeps it busy, so the figure is reported, and the per-interrupt bound is the check. Before the module holds the BARs, the mean cost of one 32-bit
# read from the guest: on mpc834x of BAR0 (OMIMR, a register without read side effects) and of BAR1 (the
# shared region's magic), each a round trip through QEMU's proxy to the emulator; on ivshmem of BAR0
# (IVPosition, a register QEMU itself answers) and of BAR2 (the shared region's magic, RAM mapped into
# the guest: no exit at all).
host_addr=10.83.49.1/24
# The contract's feature bits (host-driver/include/bpnet_contract.h).
F_EVENT_INDEX=2
F_ALL=7

netdev_appears() {
    for _ in $(seq 100); do
        [ -e /sys/class/net/bp0 ] && { echo "bp0 present"; return 0; }
        sleep 0.1
    done
    echo "no bp0 after 10 s: $(ls /sys/class/net | tr '\n' ' ')"
    return 1
}

# The agent answers (it may still be waiting for a DHCP lease before taking its static address).
agent_answers() {
    for t in $(seq 30); do
        if ping -I bp0 -c 1 -W 1 $agent_addr > /dev/null 2>&1; then
            echo "first reply on try $t"
            return 0
        fi
    done
    echo "no reply from $agent_addr within 30 s"
    return 1
}

# The features the link came up with (the module's "link up: ... features 0x.., MTU" line) include
# BPNET_F_EVENT_INDEX ($1 = on) or not ($1 = off).
event_index_is() {
    line=$(dmesg | grep 'bp0: link up' | tail -1)
    features=$(echo "$line" | sed -n 's/.*features \([0-9a-fx]*\),.*/\1/p')
    [ -n "$features" ] || { echo "no 'link up ... features' line for bp0 in dmesg"; return 1; }
    if [ $((features & F_EVENT_INDEX)) != 0 ]; then now=on; else now=off; fi
    echo "negotiated features $features: event index $now"
    [ "$now" = "$1" ]
}

# "notifications packets" so far: the module's doorbells + interrupts, and tx_frames + rx_frames (the
# agent_* counters are the agent's own and are not summed).
notifications_packets() {
    ethtool_stats bp0 | awk '
        $1 == "doorbells" || $1 == "interrupts" { n += $2; k++ }
        $1 == "tx_frames" || $1 == "rx_frames" { p += $2; k++ }
        END { if (k != 4) exit 1; print n, p }'
}

# "fast-path-reads packets interrupts" so far.
reads_packets() {
    ethtool_stats bp0 | awk '
        $1 == "host_bar_reads" { r += $2; k++ }
        $1 == "host_bar_reads_slow_path" { r -= $2; k++ }
        $1 == "tx_frames" || $1 == "rx_frames" { p += $2; k++ }
        $1 == "interrupts" { i = $2; k++ }
        END { if (k != 5) exit 1; print r, p, i }'
}

# Mean µs per 32-bit read of BAR $1 at offset $2 of agent 0's function (5000 reads after one warm-up).
bar_access_us() {
    d=$(agent_devices | head -1)
    [ -n "$d" ] || { echo "no $personality agent function on the bus"; return 1; }
    echo 1 > "$d/enable"
    text=$(bpnet-guest bar-time "$d" "$1" "$2" 5000 2>&1)
    rc=$?
    echo 0 > "$d/enable"
    echo "BAR$1+$2 of ${d##*/}: $text"
    [ $rc = 0 ]
}

# The BAR and offset of each word timed, per personality.
if [ "$personality" = ivshmem ]; then set -- 0 0x8 2 0x0; else set -- 0 0x8034 1 0x0; fi
while [ $# -ge 2 ]; do
    bar=$1
    offset=$2
    shift 2
    if text=$(bar_access_us $bar $offset); then
        result "bar$bar-access" pass "$text"
        out "FIGURE bar${bar}_access_us $(echo "$text" | sed -n 's/.*us_per_read=\([0-9.]*\).*/\1/p')"
    else
        result "bar$bar-access" fail "$text"
    fi
done

# measure TAG SUFFIX OFFER EVENT_INDEX: load the module offering the feature bits OFFER, check the link's
# event index is EVENT_INDEX (on|off), move $bytes each way; checks are named TAG-..., figures
# rig_tcp_tx_mbps$SUFFIX, rig_tcp_rx_mbps$SUFFIX and rig_notifications_per_packet$SUFFIX.
measure() {
    tag=$1
    suffix=$2
    check "$tag-module-load" insmod /lib/modules/bpnet.ko offer_features=$3 || return 1
    check "$tag-netdev" netdev_appears || return 1
    ip addr flush dev bp0
    ip addr add $host_addr dev bp0 && ip link set bp0 up
    check "$tag-carrier-up" bpnet-guest carrier bp0 up 30 || return 1
    check "$tag-agent-answers" agent_answers || return 1
    check "$tag-event-index-$4" event_index_is $4 || return 1
    before=$(notifications_packets) || { result "$tag-counters" fail "no doorbells/interrupts/tx_frames/rx_frames in ethtool -S"; return 1; }
    reads_before=$(reads_packets) || { result "$tag-counters" fail "no host_bar_reads/host_bar_reads_slow_path in ethtool -S"; return 1; }
    for dir in tx rx; do
        if [ $dir = tx ]; then what=send; else what=recv; fi
        if text=$(bpnet-guest $what bp0 $agent_addr $bytes 300 2>&1); then
            result "$tag-tcp-$dir" pass "$text"
            out "FIGURE rig_tcp_${dir}_mbps$suffix $(echo "$text" | sed -n 's/.*mbit=\([0-9.]*\).*/\1/p')"
        else
            result "$tag-tcp-$dir" fail "$text"
            return 1
        fi
    done
    after=$(notifications_packets)
    if per=$(echo "$before $after" | awk '{ if ($4 <= $2) exit 1; printf "%.5f", ($3 - $1) / ($4 - $2) }'); then
        result "$tag-notifications" pass "$per notifications/packet (doorbells + interrupts: $before -> $after)"
        out "FIGURE rig_notifications_per_packet$suffix $per"
    else
        result "$tag-notifications" fail "no packets counted: (notifications packets) $before -> $after"
    fi
    reads_after=$(reads_packets)
    # The design's bound: none where the interrupt is an MSI-X write, one ODR read per interrupt on INTx.
    if per=$(echo "$reads_before $reads_after" | awk '{ if ($5 <= $2) exit 1; printf "%.5f", ($4 - $1) / ($5 - $2) }'); then
        out "FIGURE host_bar_reads_per_packet$suffix $per"
        reads=$(echo "$reads_before $reads_after" | awk '{ print $4 - $1 }')
        irqs=$(echo "$reads_before $reads_after" | awk '{ print $6 - $3 }')
        if [ "$personality" = ivshmem ]; then allowed=0; else allowed=$irqs; fi
        detail="$per fast-path BAR reads/packet, $reads reads for $irqs interrupts (allowed $allowed): (reads packets interrupts) $reads_before -> $reads_after"
        if [ "$reads" -le "$allowed" ]; then
            result "$tag-bar-reads-per-packet" pass "$detail"
        else
            result "$tag-bar-reads-per-packet" fail "$detail"
        fi
    else
        result "$tag-bar-reads-per-packet" fail "no packets counted: (reads packets interrupts) $reads_before -> $reads_after"
    fi
}

# Each configuration starts from an unloaded module, also when the one before failed part-way.
measure suppression-on "" $F_ALL on
[ -e /sys/module/bpnet ] && check suppression-on-rmmod timeout 30 rmmod bpnet
measure suppression-off _no_event_index $((F_ALL & ~F_EVENT_INDEX)) off
[ -e /sys/module/bpnet ] && check suppression-off-rmmod timeout 30 rmmod bpnet
check kernel-log-clean kernel_log_clean
