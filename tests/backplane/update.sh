# Flashing, netbooting, recovery and reset with bpctl, against agents started by the boot stage from
# their flash (slot A holds the signed firmware image): `bpctl list` shows how each started; `bpctl
# flash all` writes slot B of every agent in parallel and both come back on it, confirmed; `bpctl boot`
# netboots an agent from this guest's TFTP server (tftpd-hpa's in.tftpd) and `boot --via-bar` starts
# one through the BAR (recovery); `bpctl reset` over the network and with --hard; `bpctl logs` still
# decodes; a bad image is refused with the agent's reason, by flash (the agent keeps working) and by
# recovery (the agent stays in recovery until a good one comes).
host_addr=10.83.49.1/24
last=$((agents - 1))
image=/lib/firmware/bpnet/bpnet-firmware.img
tftp_root=/srv/tftp

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
check configure configure
check tftp-server tftp_server
for i in $(seq 0 $last); do
    check "agent$i-carrier-up" bpnet-guest carrier bp$i up 60
    check "agent$i-answers" agent_answers $i
    check "agent$i-list-flash-a" boots_as $i flash/A any
done
check list-json-boot list_json_boot

# Flash every agent in parallel: both come back from slot B, confirmed.
check flash-all flash_all
for i in $(seq 0 $last); do
    check "agent$i-back-after-flash" back_up $i
    check "agent$i-list-flash-b" boots_as $i flash/B yes
done
check logs-after-flash logs_ready 0

# A bad image: refused by the agent (its signature), nothing erased, the agent carries on on slot B.
check bad-image make_bad_image
check flash-bad-image-refused fails_with 1 'refused' bpctl flash bp0 /tmp/bad.img
check agent0-answers-after-bad-image agent_answers 0
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
kill "$(cat /tmp/tftpd.pid)" 2>/dev/null
check kernel-log-clean kernel_log_clean
