# The demo (`cargo xtask demo`): four agents started by the boot stage from their flash, shown with
# bpctl, pinged, one netbooted from this guest's TFTP server, one flashed with progress, its log, and
# a summary. `SAY` lines are what the person running the demo reads; every step is also a check.
# Each agent's flash holds its identity record (chassis slot n), so agent n is 10.83.n.2 and this host
# is 10.83.n.1 on bpn: one subnet per agent, as a chassis is wired.
last=$((agents - 1))
image=/lib/firmware/bpnet/bpnet-firmware.img
tftp_root=/srv/tftp

# say TEXT...: one line for the reader (an empty line without TEXT).
say() {
    out "SAY $*"
}

# show COMMAND...: the command line, then its output (stdout and stderr) line by line; its status.
show() {
    say "# $*"
    "$@" > /tmp/show.out 2>&1
    rc=$?
    while IFS= read -r line; do
        say "  $line"
    done < /tmp/show.out
    return $rc
}

step() {
    say
    say "== $* =="
}

ping_all() {
    bad=0
    for i in $(seq 0 $last); do
        if text=$(ping -c 3 -W 2 10.83.$i.2 2>&1); then
            say "  bp$i 10.83.$i.2: $(echo "$text" | grep -E 'packets transmitted' ) $(echo "$text" | grep -E 'round-trip' | sed 's/.*= //')"
        else
            say "  bp$i: no answer"
            bad=1
        fi
    done
    return $bad
}

# Wait for bp$1's carrier and a ping answer (after a reset or a new image).
back_up() {
    agent_addr=10.83.$1.2
    bpnet-guest carrier bp$1 up 60 > /dev/null && agent_answers $1
}

step "bpnet demo: ${agents} agents on a virtual backplane"
say "Each agent is the real firmware on an emulated MPC8349EMDS, started by the real boot stage from"
say "slot A of its own NOR flash; the host is Linux with bpnet.ko, one network device per agent."
check module-load insmod /lib/modules/bpnet.ko || return 0 2>/dev/null || exit 0
check netdevs netdevs_appear
check configure configure_slots
for i in $(seq 0 $last); do
    check "agent$i-up" back_up $i
done

step "bpctl list: every agent, how it booted, its counters"
check list show bpctl list

step "ping every agent"
check ping-all ping_all

step "netboot bp1 from this host's TFTP server (tftpd-hpa)"
check tftp-server tftp_server
check netboot show bpctl boot --tftp-root $tftp_root bp1 $image
check agent1-back back_up 1
kill "$(cat /tmp/tftpd.pid)" 2>/dev/null

step "flash bp2 with the signed firmware image, with progress"
check flash show bpctl flash bp2 $image
check agent2-back back_up 2

step "the log of bp2 (defmt, read through the BAR)"
check logs show sh -c "bpctl logs bp2 > /tmp/logs.txt && tail -12 /tmp/logs.txt"

step "summary"
check list-after show bpctl list
check kernel-log-clean kernel_log_clean
say
say "bp1 runs the image it netbooted, bp2 the image it was flashed with (slot B, confirmed),"
say "bp0 and bp3 what their flash held. More: README.md (bpctl, flashing and netbooting a real board)."
