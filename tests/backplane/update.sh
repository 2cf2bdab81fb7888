# Flashing, netbooting, recovery and reset with bpctl, against agents started by the boot stage from
# their flash (slot A holds the signed firmware image): `bpctl list` shows how each started; `bpctl
# flash all` writes slot B of every agent in parallel and both come back on it, confirmed; `bpctl boot`
# netboots an agent from this guest's TFTP server (tftpd-hpa's in.tftpd) and `boot --via-bar` starts
# one through the BAR (recovery); `bpctl reset` over the network and with --hard; `bpctl logs` still
# decodes; a bad image is refused with the agent's reason, by flash (the agent keeps working) and by
# recovery (the agent stays in recovery until a good one comes). Each agent has an identity record
# (serial 1001 + n, slot n, so 10.83.n.2): `devlink dev info` shows its serial, board, running and
# stored versions before and after the flash, its devlink port is named by its slot, and a fault on
# purpose (the control service's FAULT) is reported by the health reporter with a dump that `bpctl
# logs --dump` decodes, and recovered by itself. After an image with a higher security
# counter is flashed and confirmed, the older counter is refused by flash and netboot (downgrade) and
# the agent keeps running, and starting, its image.
last=$((agents - 1))
image=/lib/firmware/bpnet/bpnet-firmware.img
# The same payload signed with security counter 1 (cargo xtask firmware signs both).
newer=/lib/firmware/bpnet/bpnet-firmware-counter1.img
tftp_root=/srv/tftp

# devlink's handle of bp$1: its PCI function.
dl_dev() {
    echo "pci/$(basename "$(readlink /sys/class/net/bp$1/device)")"
}

# `devlink dev info` of bp$1 as "section name value" lines (section: top, fixed, running, stored).
dl_info() {
    devlink dev info "$(dl_dev $1)" | awk '
        /^[[:space:]]+fixed:/ { s = "fixed"; next }
        /^[[:space:]]+running:/ { s = "running"; next }
        /^[[:space:]]+stored:/ { s = "stored"; next }
        /^[[:space:]]+versions:/ { next }
        /^pci\// { s = "top"; next }
        NF == 2 { print s, $1, $2 }'
}

# info_is N SECTION NAME VALUE: bp$N's devlink info shows it.
info_is() {
    got=$(dl_info $1 | awk -v s=$2 -v n=$3 '$1 == s && $2 == n { print $3 }')
    [ "$got" = "$4" ] || { echo "bp$1: devlink info $2 $3 '$got', expected '$4'"; return 1; }
}

# devlink_info N SLOT: bp$N's devlink info before (A) or after (B) the flash: driver, serial from its
# identity record, the board and SoC, the boot stage and firmware running, the slots stored and the one
# that boots next. Before the flash slot A's version is the running image's; after it, the boot-state
# record knows slot B's (it wrote it) but not slot A's (provisioned before the record existed), which
# is then not shown.
devlink_info() {
    n=$1 slot=$2
    devlink dev info "$(dl_dev $n)" | tr '\n' ' '
    info_is $n top driver bpnet || return 1
    info_is $n top serial_number $((1001 + n)) || return 1
    info_is $n fixed board.id MPC8349EMDS || return 1
    info_is $n fixed asic.id 8030 || return 1
    info_is $n running fw "$version" || return 1
    info_is $n running fw.bootloader "$version" || return 1
    info_is $n stored fw "$version" || return 1
    info_is $n stored fw.next_slot $slot || return 1
    if [ $slot = B ]; then
        info_is $n stored fw.slot_a "" || return 1
        info_is $n stored fw.slot_b "$version" || return 1
    else
        info_is $n stored fw.slot_a "$version" || return 1
        info_is $n stored fw.slot_b "" || return 1
    fi
}

# bp$1's devlink port: tied to its netdev, physical, numbered by its slot, and `ip -d link` names the
# port p<slot> (phys_port_name) while the interface keeps its name.
devlink_port() {
    text=$(devlink port show 2>&1)
    echo "$text" | tr '\n' ' '
    echo "$text" | grep -q "^$(dl_dev $1)/0: type eth netdev bp$1 flavour physical port $1 " ||
        { echo "no physical port $1 for bp$1"; return 1; }
    /usr/bin/ip -d link show bp$1 | grep -q "portname p$1 " || { echo "no portname p$1: $(/usr/bin/ip -d link show bp$1)"; return 1; }
    [ "$(cat /sys/class/net/bp$1/phys_port_name)" = "p$1" ] || { echo "phys_port_name not p$1"; return 1; }
}

# bp$1's reporter "agent" shows $2 errors and as many recoveries, back to healthy.
health_shows() {
    for _ in $(seq 60); do
        text=$(devlink health show "$(dl_dev $1)" reporter agent 2>&1)
        echo "$text" | grep -q "state healthy error $2 recover $2 " && { echo "$text"; return 0; }
        sleep 1
    done
    echo "reporter agent of bp$1 not at $2 errors and recoveries after 60 s: $text"
    return 1
}

# A fault on purpose in agent $1: the control service answers OK, then its firmware traps.
fault_agent() {
    reply=$(printf 'FAULT\n' | nc -w 10 10.83.$1.2 5020 2>&1)
    echo "$reply"
    [ "$reply" = OK ] || { echo "FAULT answered '$reply'"; return 1; }
}

# The health dump of bp$1 saved as devlink prints it; `bpctl logs --dump` decodes it: the fault record
# (vector 0x700, the trap) and the agent's log up to the FAULT request.
dump_decodes() {
    devlink -j health dump show "$(dl_dev $1)" reporter agent > /tmp/dump.json 2>/tmp/dump.err ||
        { echo "dump show: $(cat /tmp/dump.err)"; return 1; }
    text=$(bpctl logs --dump /tmp/dump.json 2>&1) || { echo "exit $?: $text" | tail -5; return 1; }
    echo "$text" | head -1
    echo "$text" | head -1 | grep -q '^fault 1: vector 0x700 SRR0=0x' || { echo "no fault record first: $text" | head -3; return 1; }
    echo "$text" | grep 'control: FAULT' || { echo "no 'control: FAULT' line among: $(echo "$text" | tail -3)"; return 1; }
}

# `devlink health diagnose`: the agent's state and generation and the module's counters, and the fault.
diagnose_shows() {
    text=$(devlink health diagnose "$(dl_dev $1)" reporter agent 2>&1)
    echo "$text" | tr '\n' ' '
    for f in agent_state agent_generation contract_errors link_resets 'vector: 1792'; do
        echo "$text" | grep -q "$f" || { echo "no '$f' in the diagnosis"; return 1; }
    done
}

list_json_boot() {
    bpctl --json list > /tmp/list.json 2>/tmp/list.err || { echo "exit $?: $(cat /tmp/list.err)"; return 1; }
    json_valid < /tmp/list.json || return 1
    n=$(grep -c '"source": "flash"' /tmp/list.json)
    [ "$n" = "$agents" ] || { echo "$n agents with boot source flash in the JSON, expected $agents"; return 1; }
    grep -q '"slot_a"' /tmp/list.json || { echo "no slot_a in the JSON"; return 1; }
}

# `bpctl flash all`: a summary row per agent with ok, slot B and the image's version.
flash_all() {
    text=$(bpctl flash all $image 2>/tmp/flash.err) || { echo "exit $?: $text $(tail -3 /tmp/flash.err)"; return 1; }
    echo "$text"
    for i in $(seq 0 $last); do
        echo "$text" | awk -v d=bp$i -v v="$version" '$1 == d && $2 == "ok" && $3 == "B" && $4 == v { f = 1 }
            END { exit !f }' || { echo "no 'bp$i ok B $version' row"; return 1; }
    done
}

# flash_one IMAGE SLOT: `bpctl flash bp0 IMAGE` answers a row with ok, SLOT and the image's version.
flash_one() {
    text=$(bpctl flash bp0 $1 2>/tmp/flash.err) || { echo "exit $?: $text $(tail -3 /tmp/flash.err)"; return 1; }
    echo "$text"
    echo "$text" | awk -v s="$2" -v v="$version" '$1 == "bp0" && $2 == "ok" && $3 == s && $4 == v { f = 1 }
        END { exit !f }' || { echo "no 'bp0 ok $2 $version' row"; return 1; }
}

# A copy of the image with four payload bytes changed: its signature no longer verifies.
make_bad_image() {
    cp $image /tmp/bad.img
    printf 'XXXX' | dd of=/tmp/bad.img bs=1 seek=512 conv=notrunc 2> /dev/null
    if cmp -s $image /tmp/bad.img; then
        echo "the bad image is the same as the good one"
        return 1
    fi
    echo "/tmp/bad.img: 4 payload bytes changed"
}

logs_ready() {
    text=$(bpctl logs bp$1 2>&1) || { echo "exit $?: $text" | tail -5; return 1; }
    line=$(echo "$text" | grep 'net: ready' | tail -1)
    [ -n "$line" ] || { echo "no 'net: ready' among $(echo "$text" | wc -l) lines: $(echo "$text" | tail -3)"; return 1; }
    echo "$line"
}

# bp$1 shows agent state RECOVERY in `bpctl list` (its LINK is "down (...)", so the state is found by
# word, not by column) and in the JSON; bp0 does not.
in_recovery() {
    row=$(list_row $1)
    echo "$row"
    echo "$row" | grep -q ' recovery ' || { echo "bp$1 not shown in recovery"; return 1; }
    list_row 0 | grep -q ' recovery ' && { echo "bp0 shown in recovery too: $(list_row 0)"; return 1; }
    bpctl --json list | grep -q '"agent_state": "recovery"' || { echo "no agent_state recovery in the JSON"; return 1; }
}

reset_json() {
    bpctl --json reset bp$1 > /tmp/reset.json 2>/tmp/reset.err || { echo "exit $?: $(cat /tmp/reset.err)"; return 1; }
    json_valid < /tmp/reset.json || return 1
    grep -q '"via": "control service"' /tmp/reset.json || { echo "not reset through the control service: $(cat /tmp/reset.json)"; return 1; }
}

[ -f $image ] || { result image fail "$image missing from the initramfs (cargo xtask firmware signs it)"; return 0 2>/dev/null || exit 0; }
version=$(image_version $image)
result image pass "$image, version $version"
if ! check module-load insmod /lib/modules/bpnet.ko; then
    check kernel-log-clean kernel_log_clean
    return 0 2>/dev/null || exit 0
fi
check netdevs netdevs_appear
check configure configure_slots
check tftp-server tftp_server
for i in $(seq 0 $last); do
    check "agent$i-carrier-up" bpnet-guest carrier bp$i up 60
    check "agent$i-answers" agent_answers $i 10.83.$i.2
    check "agent$i-list-flash-a" boots_as $i flash/A any
    check "agent$i-devlink-info" devlink_info $i A
    check "agent$i-devlink-port" devlink_port $i
done
check list-json-boot list_json_boot

# Flash every agent in parallel: both come back from slot B, confirmed.
check flash-all flash_all
for i in $(seq 0 $last); do
    check "agent$i-back-after-flash" back_up $i
    check "agent$i-list-flash-b" boots_as $i flash/B yes
    check "agent$i-devlink-info-after-flash" devlink_info $i B
done
check logs-after-flash logs_ready 0

# A bad image: refused by the agent (its signature), nothing erased, the agent carries on on slot B.
check bad-image make_bad_image
check flash-bad-image-refused fails_with 1 'refused' bpctl flash bp0 /tmp/bad.img
check agent0-answers-after-bad-image agent_answers 0 10.83.0.2
check agent0-still-flash-b boots_as 0 flash/B yes
check flash-not-an-image fails_with 2 'not a bpnet image' bpctl flash bp0 /lib/firmware/bpnet/bpnet-firmware.elf

# Netboot agent 0 from this guest's TFTP server.
check netboot bpctl boot --tftp-root $tftp_root bp0 $image
check agent0-back-after-netboot back_up 0
check agent0-list-netboot boots_as 0 netboot any
check netboot-file-served test -s $tftp_root/bpnet-firmware.img

# Recovery through the BAR on the last agent: a bad image is refused and it stays in recovery; a good
# one starts.
check via-bar-bad-image-refused fails_with 1 'refused' bpctl boot --via-bar bp$last /tmp/bad.img
check "agent$last-in-recovery" in_recovery $last
# No network to an agent in recovery: a plain reset goes through bpnet_control, and it starts from
# flash again.
check "reset-agent$last-in-recovery" sh -c "bpctl reset bp$last 2>&1 | grep 'through the bpnet_control; back after'"
check "agent$last-back-after-recovery-reset" back_up $last
check "agent$last-list-after-recovery-reset" boots_as $last flash/B yes
check via-bar bpctl boot --via-bar bp$last $image
check "agent$last-back-after-recovery" back_up $last
check "agent$last-list-recovery" boots_as $last recovery any

# Resets: over the control service, and through the BAR; both agents start from slot B again.
check reset-network reset_json 0
check agent0-back-after-reset back_up 0
check agent0-list-after-reset boots_as 0 flash/B yes
check reset-hard bpctl reset --hard bp$last
check "agent$last-back-after-hard-reset" back_up $last
check "agent$last-list-after-hard-reset" boots_as $last flash/B yes
check logs-after-reset logs_ready $last

# A fault on purpose in agent 0: reported once, dumped, recovered by itself (auto-recover resets it).
check health-before health_shows 0 0
check fault-agent0 fault_agent 0
check health-reported health_shows 0 1
check agent0-back-after-fault back_up 0
check agent0-list-after-fault boots_as 0 flash/B yes
check health-dump-decodes dump_decodes 0
check health-diagnose diagnose_shows 0
check fault-logged sh -c "dmesg | grep 'agent fault 1: vector 0x700'"
# No downgrade: bp0 takes the image with security counter 1 (into slot A) and confirms it; from then on
# the counter-0 image is refused by flash and by netboot, nothing is erased, and bp0 still runs and
# starts from its image.
check newer-image test -f $newer
check flash-counter1 flash_one $newer A
check agent0-back-after-counter1 back_up 0
check agent0-list-counter1 boots_as 0 flash/A yes
check flash-older-counter-refused fails_with 1 'downgrade refused' bpctl flash bp0 $image
check netboot-older-counter-refused fails_with 1 'downgrade refused' bpctl boot --tftp-root $tftp_root bp0 $image
check agent0-answers-after-downgrade agent_answers 0 10.83.0.2
check reset-after-downgrade reset_json 0
check agent0-back-after-downgrade back_up 0
check agent0-still-counter1 boots_as 0 flash/A yes
kill "$(cat /tmp/tftpd.pid)" 2>/dev/null
check kernel-log-clean kernel_log_clean
