# A hostile agent next to a normal one: agent 0 runs the hostile-agent image, which after a normal
# bring-up breaks the contract once per connection, in this order (firmware/app/src/net/hostile.rs):
# an RX completion with an id never posted, a TX completion for a frame never posted, an RX completion
# longer than its page buffer (RX_MULTI_BUFFER: dropped and counted, the link kept), rx_used far beyond what was posted, an interrupt storm, a wrong magic and a
# wrong major version at the next set-up, a flapping state byte, malformed RX_MULTI_BUFFER chains. Each
# phase starts at the connection after the module re-initialises bp0 with a new MTU (the first: at bp0's
# first link-up); until then the agent leaves bp0's set-ups unanswered. After each, bp0 must be marked broken
# (the module's message in dmesg, contract_errors and link_resets grown, carrier off), while bp1, on the
# normal agent 1, keeps carrying ping and TCP echo (the malformed chains instead are dropped and counted
# in rx_bad_chains, with bp0's link kept); the kernel log stays free of oops/BUG/WARN/lockups.
# After the last phase (and one more MTU change) agent 0 behaves and bp0's link comes back; rmmod leaves
# a healthy machine. On mpc834x both agents sit on one INTx pin (slots 0x08 and 0x0c): the storm, masked
# at the hostile agent's own OMIMR, must not get the shared line disabled ("nobody cared") under bp1.
# The storm must be refused within 192 of bp0's interrupts from its link-up (on either personality);
# once it is masked no interrupt reaches bp0's lines but bp1's; its cost in interrupts and BAR accesses
# is reported. bp0's health reporter (devlink) counted and recovered its violations, bp1's none.
host_addr=10.83.49.1/24
# Each phase: (name, what the module's refusal says). Searched for in order, each after the previous.
phases="wrong-id:RX.completion.[0-9]*:.id
never-posted:tx_used.[0-9]*.outside
long-completion:
used-beyond:rx_used.[0-9]*.outside
interrupt-storm:interrupt.storm
bad-magic:magic.0x
bad-version:contract.version
state-flap:state.127.is.not.defined
bad-chains:"

# A kernel log line that must never appear.
bad_kernel_log='WARNING:|BUG:|Oops|general protection|Call Trace|kernel BUG|RIP:|soft lockup|rcu_sched detected|hung_task|blocked for more than|nobody cared|Disabling IRQ'

# "ERRORS RECOVERIES" of bpnet.ko's health reporter "agent" of bp$1 (devlink health show).
health_counts() {
    dev="pci/$(basename "$(readlink /sys/class/net/bp$1/device)")"
    devlink health show "$dev" reporter agent | tr -s ' \n' '  ' |
        sed -n 's/.* error \([0-9]*\) recover \([0-9]*\) .*/\1 \2/p'
}

# bp0's violations reached the health reporter and were recovered (by the link's re-initialisation,
# not a reset: the hostile agent keeps its phase); reports within the grace period after a recovery
# are counted, not recovered. bp1's normal agent reported nothing.
health_reported() {
    set -- $(health_counts 0) $(health_counts 1)
    echo "bp0: $1 errors, $2 recoveries; bp1: $3 errors, $4 recoveries"
    [ "${1:-0}" -ge 1 ] && [ "${2:-0}" -ge 1 ] || { echo "bp0's violations not reported"; return 1; }
    [ "$3" = 0 ] || { echo "bp1 reported"; return 1; }
}

stat_of() {
    ethtool_stats "$1" | awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "missing" }'
}

# The first line at or after line $1 of dmesg that says bp0 broke the contract and matches $2; prints
# "line-number:text".
find_refusal() {
    dmesg | awk -v from="$1" -v re="$2" 'NR >= from && /bp0: agent broke the contract/ && $0 ~ re { print NR ":" $0; exit }'
}

wait_refusal() {
    for _ in $(seq 600); do
        hit=$(find_refusal "$1" "$2")
        if [ -n "$hit" ]; then
            echo "$hit"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ping and a TCP echo of $bytes through bp1 until /tmp/stop-bp1 appears; one line per round in /tmp/bp1.log.
bp1_traffic() {
    round=0
    while [ ! -e /tmp/stop-bp1 ]; do
        round=$((round + 1))
        if ping -I bp1 -c 1 -W 3 10.83.49.2 > /dev/null 2>&1; then p=ok; else p=lost; fi
        if e=$(bpnet-guest echo bp1 10.83.49.2 "$bytes" 60 2>&1); then s=pass; else s=fail; fi
        echo "$round $s ping=$p $e" >> /tmp/bp1.log
    done
}

# Check the rounds of bp1 traffic logged since line $2 of /tmp/bp1.log: at least one, every echo whole.
bp1_rounds_ok() {
    rounds=$(tail -n +"$2" /tmp/bp1.log | grep -c .)
    failed=$(tail -n +"$2" /tmp/bp1.log | grep -v ' pass ping=ok ' | head -2 | tr '\n' ' ')
    if [ "$rounds" -ge 1 ] && [ -z "$failed" ]; then
        result "$1" pass "$rounds rounds of ping + $bytes-byte echo through bp1, all whole"
    else
        result "$1" fail "$rounds rounds; failed: $failed"
    fi
}

# The module's counts that a phase costs, as one line: for bp0, then bp1, its interrupts, fast-path
# BAR reads (on mpc834x the handler's ODR read, made for every interrupt on the shared line, the
# neighbour's too), slow-path BAR reads and BAR writes. One `stats` per device, so the look itself adds
# the same few slow-path reads to every sample.
costs() {
    for dev in bp0 bp1; do
        ethtool_stats $dev | awk '
            { v[$1] = $2 }
            END { printf "%d %d %d %d ", v["interrupts"], v["host_bar_reads"] - v["host_bar_reads_slow_path"],
                  v["host_bar_reads_slow_path"], v["host_bar_writes"] }'
    done
    echo
}

# The storm's cost (counts from costs: $1 at bp0's link-up, $2 when the refusal was seen, $3 at the
# end of the phase's checks) must stay bounded up to the refusal: the storm is caught and masked after
# a short run of interrupts, whatever the bus. After it the agent may still ring its masked doorbell
# for a while, which bp0's handler clears whenever bp1 interrupts on the shared line.
storm_cost() {
    set -- $1 $2 $3
    # 1-8: at link-up, 9-16: at the refusal, 17-24: at the end (bp0: 4 counts, then bp1: 4).
    irqs=$((${9} - $1))
    echo "to the refusal (${took}s after link-up): bp0 $irqs interrupts, $((${10} - $2)) fast-path and" \
        "$((${11} - $3)) slow-path BAR reads, $((${12} - $4)) BAR writes, bp1 $((${13} - $5)) interrupts," \
        "$((${14} - $6)) fast-path BAR reads; to the end of the phase: bp0 $((${17} - $1)) interrupts," \
        "$((${18} - $2)) fast-path and $((${19} - $3)) slow-path BAR reads, $((${20} - $4)) BAR writes," \
        "bp1 $((${21} - $5)) interrupts, $((${22} - $6)) fast-path BAR reads"
    [ "$irqs" -le "$storm_max_interrupts" ]
}
# The storm is refused after 32 interrupts in a row that bring nothing new (BPNET_STORM_IDLE), of
# either kind (STATUS, LINK), so after at most 63 of them. The rest is slack for bp0's own traffic
# before the storm and for the doorbell bits the agent still rings behind its mask, which bp0's
# handler finds and clears (and counts) whenever bp1 interrupts, until the refusal is seen here.
storm_max_interrupts=192

# bp0's interrupt lines: its MSI-X vectors (ivshmem) or its INTx line (mpc834x, shared with bp1).
bp0_irqs() {
    d=/sys/class/net/bp0/device
    if [ -n "$(ls "$d/msi_irqs" 2>/dev/null)" ]; then ls "$d/msi_irqs"; else cat "$d/irq"; fi
}

# Interrupts delivered on bp0's lines (every CPU's column of /proc/interrupts) that were not bp1's:
# on mpc834x the shared line's count less bp1's interrupts, on ivshmem bp0's own vectors' count. bp1
# keeps interrupting while its counters are read, so on mpc834x this is a range: "low high", with
# bp1's count taken after and before the line's.
foreign_interrupts() {
    [ "$personality" = mpc834x ] && b0=$(stat_of bp1 interrupts)
    lines=$(for irq in $(bp0_irqs); do grep "^ *$irq:" /proc/interrupts; done |
        awk '{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }')
    if [ "$personality" = mpc834x ]; then
        b1=$(stat_of bp1 interrupts)
        echo "$((lines - b1)) $((lines - b0))"
    else
        echo "$lines $lines"
    fi
}

# After the refusal the storm is masked at its source (OMIMR ODIM on mpc834x, the vectors on ivshmem),
# so no interrupt is delivered on bp0's lines but bp1's, whatever the agent still rings ($1: the
# range of foreign_interrupts at the refusal; the least growth the two ranges allow is checked). A few
# may already have been on their way.
storm_masked() {
    set -- $1 $(foreign_interrupts)
    echo "$(($3 - $2)) to $(($4 - $1)) interrupts on bp0's lines ($(bp0_irqs | tr '\n' ' ')) that were" \
        "not bp1's since the refusal"
    [ $(($3 - $2)) -le 8 ]
}

# The phases with RX_MULTI_BUFFER completions the module drops and counts without breaking the link:
# long-completion (one buffer longer than its page: 1 dropped) and the last, bad-chains (a chain one past
# the bound, a buffer longer than a page, a frame longer than the MTU: 3 dropped; then a frame's first
# buffer with nothing after it, held, never handed up, freed at the next set-up). $1: rx_bad_chains
# before the phase, $2: how many it adds.
dropped_chains() {
    case $1 in long-completion) echo 1 ;; bad-chains) echo 3 ;; *) echo 0 ;; esac
}
bad_chains_counted() {
    now=missing
    for _ in $(seq 600); do
        now=$(stat_of bp0 rx_bad_chains)
        [ "$now" != missing ] && [ "$now" -ge $(($1 + $2)) ] && break
        sleep 0.1
    done
    sleep 1
    now=$(stat_of bp0 rx_bad_chains)
    echo "rx_bad_chains $1 -> $now (want +$2), rx_errors $(stat_of bp0 rx_errors), rx_frames $(stat_of bp0 rx_frames)"
    [ "$now" != missing ] && [ "$now" = $(($1 + $2)) ]
}
bad_chains_link_kept() {
    hit=$(find_refusal "$1" .)
    carrier=$(cat /sys/class/net/bp0/carrier 2>/dev/null || echo 0)
    now=$(cat /sys/class/net/bp0/carrier_down_count)
    echo "carrier $carrier, carrier_down_count $2 -> $now, contract refusals since: ${hit:-none}"
    [ -z "$hit" ] && [ "$carrier" = 1 ] && [ "$now" = "$2" ]
}
kernel_log_healthy() {
    bad=$(dmesg | grep -E "$bad_kernel_log" | head -3)
    if [ -n "$bad" ]; then
        echo "$bad"
        return 1
    fi
    echo "no oops/BUG/WARN/lockup in dmesg"
}

if ! check module-load insmod /lib/modules/bpnet.ko; then
    check kernel-log-clean kernel_log_healthy
    return 0 2>/dev/null || exit 0
fi
for _ in $(seq 100); do
    [ -e /sys/class/net/bp0 ] && [ -e /sys/class/net/bp1 ] && break
    sleep 0.1
done
check netdevs ls -d /sys/class/net/bp0 /sys/class/net/bp1

# mpc834x: both agents' functions on one interrupt line, with two handlers on it (IRQF_SHARED).
shared_line() {
    set -- $(agent_devices)
    [ $# = 2 ] || { echo "$# agent functions, expected 2"; return 1; }
    a=$(cat "$1/irq")
    b=$(cat "$2/irq")
    line=$(grep "^ *$a:" /proc/interrupts | tr -s ' ')
    echo "${1##*/} irq $a, ${2##*/} irq $b: $line"
    [ "$a" = "$b" ] && echo "$line" | grep -q ', '
}
[ "$personality" = mpc834x ] && check shared-intx shared_line
ip addr add $host_addr dev bp1
ip link set bp1 up
check bp1-carrier-up bpnet-guest carrier bp1 up 30
# The normal agent has its static address 3 s after link-up.
for _ in $(seq 30); do ping -I bp1 -c 1 -W 1 10.83.49.2 > /dev/null 2>&1 && break; done
check bp1-ping ping -I bp1 -c 3 -W 5 10.83.49.2

# Agent 0's first violation comes 3 s after its first link-up: everything is counted from before it.
: > /tmp/bp1.log
bp1_traffic &
traffic=$!
mark=$(($(dmesg | grep -c .) + 1))
errors=$(stat_of bp0 contract_errors)
resets=$(stat_of bp0 link_resets)
downs=$(cat /sys/class/net/bp0/carrier_down_count)
ip link set bp0 up
check bp0-carrier-up bpnet-guest carrier bp0 up 30
mtu=1500
for phase in $phases; do
    # Not `name`: lib.sh's result and check use it.
    pname=${phase%%:*}
    pattern=${phase#*:}
    logged=$(($(grep -c . /tmp/bp1.log) + 1))
    # The agent's cue for its next phase (the first comes with bp0's first link-up, above).
    chains=$(stat_of bp0 rx_bad_chains)
    if [ "$pname" != wrong-id ]; then
        mtu=$((mtu - 1))
        ip link set bp0 mtu $mtu
    fi
    if [ "$(dropped_chains "$pname")" != 0 ]; then
        check "$pname-carrier-up" bpnet-guest carrier bp0 up 30
        # From this link-up on: the previous phase's agent may still have been refused on its way here.
        mark=$(($(dmesg | grep -c .) + 1))
        downs=$(cat /sys/class/net/bp0/carrier_down_count)
        check "$pname-dropped-and-counted" bad_chains_counted "$chains" "$(dropped_chains "$pname")"
        check "$pname-link-kept" bad_chains_link_kept "$mark" "$downs"
        sleep 1
        bp1_rounds_ok "$pname-bp1-during" "$logged"
        check "$pname-bp1-after" bpnet-guest echo bp1 10.83.49.2 "$bytes" 60
        check "$pname-kernel-log" kernel_log_healthy
        continue
    fi
    # The storm's cost is counted from bp0's link-up (the agent storms 3 s after it) to the end of
    # the phase's checks.
    if [ "$pname" = interrupt-storm ]; then
        bpnet-guest carrier bp0 up 30 > /dev/null
        before=$(costs)
        cue=$(cut -d ' ' -f 1 /proc/uptime)
    fi
    if ! hit=$(wait_refusal "$mark" "$pattern"); then
        result "$pname-refused" fail "no 'bp0: agent broke the contract' matching '$pattern' within 60 s: $(dmesg | tail -n +"$mark" | grep bp0 | tail -3 | tr '\n' ' ')"
        if [ "$pname" = interrupt-storm ]; then
            took="no refusal in 60+"
            refused=$(costs)
            check interrupt-storm-cost storm_cost "$before" "$refused" "$refused"
        fi
        continue
    fi
    mark=$((${hit%%:*} + 1))
    if [ "$pname" = interrupt-storm ]; then
        foreign=$(foreign_interrupts)
        refused=$(costs)
        took=$(awk -v a="$cue" -v b="$(cut -d ' ' -f 1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')
    fi
    result "$pname-refused" pass "${hit#*:}"
    # Carrier off, and seen to go off, while the agent holds off after the module re-initialised.
    carrier=$(cat /sys/class/net/bp0/carrier 2>/dev/null || echo 0)
    now=$(cat /sys/class/net/bp0/carrier_down_count)
    if [ "$carrier" = 0 ] && [ "$now" -gt "$downs" ]; then
        result "$pname-carrier-off" pass "carrier off, carrier_down_count $downs -> $now"
    else
        result "$pname-carrier-off" fail "carrier $carrier, carrier_down_count $downs -> $now"
    fi
    downs=$now
    e=$(stat_of bp0 contract_errors)
    r=$(stat_of bp0 link_resets)
    if [ "$e" != missing ] && [ "$e" -gt "$errors" ] && [ "$r" -gt "$resets" ]; then
        result "$pname-counters" pass "contract_errors $errors -> $e, link_resets $resets -> $r"
    else
        result "$pname-counters" fail "contract_errors $errors -> $e, link_resets $resets -> $r"
    fi
    errors=$e
    resets=$r
    # During: the rounds since the phase began. After: one more, in the foreground.
    sleep 1
    bp1_rounds_ok "$pname-bp1-during" "$logged"
    check "$pname-bp1-after" bpnet-guest echo bp1 10.83.49.2 "$bytes" 60
    check "$pname-kernel-log" kernel_log_healthy
    if [ "$pname" = interrupt-storm ]; then
        check interrupt-storm-masked storm_masked "$foreign"
        check interrupt-storm-cost storm_cost "$before" "$refused" "$(costs)"
    fi
done
touch /tmp/stop-bp1
wait $traffic
bp1_rounds_ok bp1-throughout 1

# The hostile agent behaves after its last phase: bp0's link comes back at the next set-up.
ip link set bp0 mtu 1500
check bp0-recovers bpnet-guest carrier bp0 up 60
check bp1-ping-end ping -I bp1 -c 3 -W 5 10.83.49.2
check health-reported health_reported
check rmmod timeout 30 rmmod bpnet
check netdevs-gone sh -c '! ls -d /sys/class/net/bp* 2>/dev/null'
check kernel-log-clean kernel_log_healthy
# The machine is still healthy: it can load the module again and reach the normal agent.
check insmod-again insmod /lib/modules/bpnet.ko
for _ in $(seq 100); do [ -e /sys/class/net/bp1 ] && break; sleep 0.1; done
ip addr add $host_addr dev bp1
ip link set bp1 up
check bp1-carrier-again bpnet-guest carrier bp1 up 30
for _ in $(seq 30); do ping -I bp1 -c 1 -W 1 10.83.49.2 > /dev/null 2>&1 && break; done
check bp1-echo-again bpnet-guest echo bp1 10.83.49.2 "$bytes" 60
check rmmod-again timeout 30 rmmod bpnet
check kernel-log-clean-end kernel_log_healthy
