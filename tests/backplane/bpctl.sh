# bpctl, the operators' tool, against the agents through bpnet.ko: `bpctl list` shows every agent with
# its link up and the firmware version its BAR header holds (read independently here with devmem),
# `bpctl list --json` is one valid JSON document, `bpctl logs` decodes the firmware's defmt log from the
# BAR (with the network up and down, and without the ELF it says so), `bpctl bench` moves data both
# ways with a checked pattern. Flashing, booting and resetting are the update suite's (update.sh).
host_addr=10.83.49.1/24
last=$((agents - 1))

# major.minor.patch of each agent's header firmware_version (shared region + 0x10: BAR1 on mpc834x, BAR2
# on ivshmem), read with devmem before the
# module holds the BARs, once the agent is READY (agent_state at 0x2c): line n+1 of /tmp/versions is
# agent n's (a file: checks run in subshells).
read_header_versions() {
    i=0
    : > /tmp/versions
    for d in $(agent_devices); do
        echo 1 > "$d/enable"
        shared=$(bar_start "$d" "$(shared_bar)")
        state=
        for _ in $(seq 100); do
            state=$(devmem $((shared + 0x2c)) 8)
            [ "$state" = 0x01 ] && break
            sleep 0.1
        done
        v=$(devmem $((shared + 0x10)) 32)
        echo 0 > "$d/enable"
        # The version is the agent's only once it shows READY.
        [ "$state" = 0x01 ] || { echo "agent$i: agent_state $state after 10 s, expected READY (0x01)"; return 1; }
        echo "$(((v >> 16) & 255)).$(((v >> 8) & 255)).$((v & 255))" >> /tmp/versions
        echo "agent$i: firmware $(tail -1 /tmp/versions)"
        i=$((i + 1))
    done
    [ $i = "$agents" ] || { echo "$i $personality agent functions, expected $agents"; return 1; }
}

header_version() {
    sed -n "$(($1 + 1))p" /tmp/versions
}

# `bpctl list`: a row per agent (# AGENT PCI LINK STATE FIRMWARE ... BUS) with link up, RUNNING, the
# header's firmware version and the run's bus personality.
list_shows_agents() {
    text=$(bpctl list 2>&1) || { echo "bpctl list failed: $text"; return 1; }
    echo "$text"
    for i in $(seq 0 $last); do
        want=$(header_version $i)
        row=$(echo "$text" | awk -v d=bp$i '$2 == d')
        [ -n "$row" ] || { echo "no row for bp$i"; return 1; }
        set -- $row
        [ "$4" = up ] || { echo "bp$i: link '$4', expected up"; return 1; }
        [ "$5" = running ] || { echo "bp$i: state '$5', expected running"; return 1; }
        [ "$6" = "$want" ] || { echo "bp$i: firmware '$6', the header says $want"; return 1; }
        [ "${11}" = "${agent_addr}" ] || { echo "bp$i: IP '${11}', expected the neighbour $agent_addr"; return 1; }
        [ "${16}" = "$personality" ] || { echo "bp$i: BUS '${16}', expected $personality"; return 1; }
    done
    rows=$(echo "$text" | awk 'NR > 1 && $2 ~ /^bp/' | wc -l)
    [ "$rows" = "$agents" ] || { echo "$rows agent rows, expected $agents"; return 1; }
}

list_json() {
    bpctl --json list > /tmp/list.json 2>/tmp/list.err || { echo "exit $?: $(cat /tmp/list.err)"; return 1; }
    json_valid < /tmp/list.json || return 1
    n=$(grep -c '"carrier": true' /tmp/list.json)
    [ "$n" = "$agents" ] || { echo "$n agents with carrier in the JSON, expected $agents"; return 1; }
    for i in $(seq 0 $last); do
        grep -q "\"netdev\": \"bp$i\"" /tmp/list.json || { echo "bp$i missing from the JSON"; return 1; }
        grep -q "\"firmware_version\": \"$(header_version $i)\"" /tmp/list.json ||
            { echo "no firmware_version $(header_version $i) in the JSON"; return 1; }
    done
    n=$(grep -c "\"personality\": \"$personality\"" /tmp/list.json)
    [ "$n" = "$agents" ] || { echo "$n agents with personality $personality in the JSON, expected $agents"; return 1; }
}

# `bpctl logs bp$1` holds the firmware's "net: ready" line, decoded with the ELF in /lib/firmware/bpnet.
logs_ready() {
    text=$(bpctl logs bp$1 2>&1) || { echo "exit $?: $text" | tail -5; return 1; }
    line=$(echo "$text" | grep 'net: ready' | head -1)
    [ -n "$line" ] || { echo "no 'net: ready' among $(echo "$text" | wc -l) lines: $(echo "$text" | tail -3)"; return 1; }
    echo "$line"
}

# `--follow` prints the ring's lines and keeps going until stopped.
logs_follow() {
    timeout 3 bpctl logs --follow bp0 > /tmp/follow.txt 2>&1
    rc=$?
    # timeout's status for a command it had to stop is 143 (SIGTERM).
    [ $rc = 143 ] || { echo "bpctl logs --follow ended by itself (exit $rc): $(tail -3 /tmp/follow.txt)"; return 1; }
    grep -q 'net: ready' /tmp/follow.txt || { echo "no 'net: ready' while following"; return 1; }
    echo "$(wc -l < /tmp/follow.txt) lines in 3 s, net: ready among them"
}

logs_json() {
    bpctl --json logs bp0 > /tmp/logs.json 2>/tmp/logs.err || { echo "exit $?: $(cat /tmp/logs.err)"; return 1; }
    json_valid < /tmp/logs.json || return 1
    grep -q 'net: ready' /tmp/logs.json || { echo "no 'net: ready' in the JSON"; return 1; }
}

# Without the ELF the frames are counted and the hint names --elf.
logs_without_elf() {
    mv /lib/firmware/bpnet/bpnet-firmware.elf /tmp/fw.elf
    text=$(bpctl logs bp0 2>&1)
    rc=$?
    mv /tmp/fw.elf /lib/firmware/bpnet/bpnet-firmware.elf
    [ $rc = 0 ] || { echo "exit $rc: $text"; return 1; }
    echo "$text" | grep -q -- '--elf' || { echo "no hint naming --elf: $text"; return 1; }
    frames=$(echo "$text" | sed -n 's/.* bytes in \([0-9]*\) defmt frames.*/\1/p')
    [ -n "$frames" ] && [ "$frames" -gt 0 ] || { echo "no frame count: $text"; return 1; }
    echo "$text" | tail -1
}

# `bpctl bench bp$1`: a row AGENT ADDR BYTES TX RX ... with both rates above zero.
bench_both_ways() {
    text=$(bpctl bench --bytes $bytes --timeout 180 bp$1 2>&1) || { echo "exit $?: $text" | tail -3; return 1; }
    echo "$text"
    echo "$text" | awk -v d=bp$1 '$1 == d { found = 1; if ($4 + 0 > 0 && $5 + 0 > 0) ok = 1 }
        END { if (!found) { print "no row for " d; exit 1 } if (!ok) { print "a rate is zero"; exit 1 } }'
}

bench_json() {
    bpctl --json bench --bytes 262144 bp$last > /tmp/bench.json 2>/tmp/bench.err ||
        { echo "exit $?: $(cat /tmp/bench.err)"; return 1; }
    json_valid < /tmp/bench.json || return 1
    grep -q '"notifications_per_packet"' /tmp/bench.json || { echo "no notifications_per_packet"; return 1; }
}

check no-agents fails_with 1 'no agents' bpctl list
check header-versions read_header_versions
if ! check module-load insmod /lib/modules/bpnet.ko; then
    check kernel-log-clean kernel_log_clean
    return 0 2>/dev/null || exit 0
fi
check netdevs netdevs_appear
check configure configure
for i in $(seq 0 $last); do
    check "agent$i-carrier-up" bpnet-guest carrier bp$i up 30
    check "agent$i-answers" agent_answers $i
done
check list list_shows_agents
check list-json list_json
for i in $(seq 0 $last); do
    check "logs-agent$i" logs_ready $i
done
check logs-follow logs_follow
check logs-json logs_json
check logs-without-elf logs_without_elf
# The log is read from the BAR: it does not need the agent's network.
ip link set bp$last down
check "logs-agent$last-link-down" logs_ready $last
ip link set bp$last up
check "agent$last-carrier-up-again" bpnet-guest carrier bp$last up 30
check bench bench_both_ways 0
check "agent$last-answers-again" agent_answers $last
check bench-json bench_json
check unknown-agent fails_with 2 'no agent `bp9`' bpctl logs bp9
check flash-not-an-image fails_with 2 'not a bpnet image' bpctl flash all /lib/firmware/bpnet/bpnet-firmware.elf
check kernel-log-clean kernel_log_clean
