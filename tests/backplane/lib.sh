# Helpers for the guest's test suites (busybox sh). Sourced by /init.

# One line to the results port (and the console, so the console log tells the same story).
out() {
    echo "$*" > /dev/ttyS1
    echo "bptest: $*" > /dev/console
}

# result NAME pass|fail DETAIL...
result() {
    name=$1
    status=$2
    shift 2
    out "RESULT $name $status $(echo "$*" | tr '\n' ' ' | cut -c1-300)"
}

# check NAME COMMAND...: pass if the command exits 0; its output is the detail.
check() {
    name=$1
    shift
    if text=$("$@" 2>&1); then
        result "$name" pass "$text"
        return 0
    fi
    result "$name" fail "$text"
    return 1
}

# `ethtool -S $1` as "name value" lines (the agent's counters and the module's), for awk.
ethtool_stats() {
    ethtool -S "$1" | sed -n 's/^[[:space:]]*\([^:]*\): \([0-9]*\)$/\1 \2/p'
}

# The features `ethtool -k $1` shows on, space-separated (fixed ones too).
features_on() {
    ethtool -k "$1" | sed -n 's/^[[:space:]]*\([a-z0-9-]*\): on.*/\1/p' | tr '\n' ' '
}

# Each agent's PCI function in slot order (agent 0 first), as the run's personality shows it:
# mpc834x: an MPC834x in agent mode (vendor 0x1957, devices 0x0080-0x0087, class 0x0b2001);
# ivshmem: an ivshmem-doorbell device (1af4:1110).
agent_devices() {
    if [ "$personality" = ivshmem ]; then
        ivshmem_devices
        return
    fi
    for d in /sys/bus/pci/devices/*; do
        case "$(cat "$d/vendor") $(cat "$d/device")" in
            "0x1957 0x008"[0-7]) echo "$d" ;;
        esac
    done
}

# The BAR holding the agent's shared region: BAR1 (inbound window 0) on mpc834x, BAR2 on ivshmem.
shared_bar() {
    if [ "$personality" = ivshmem ]; then echo 2; else echo 1; fi
}

# `lspci -n` as pciutils prints it (busybox here has no lspci): "00:10.0 0b20: 1957:0080 (rev 11)"
# from sysfs, one line per PCI function.
lspci_n() {
    for d in /sys/bus/pci/devices/*; do
        class=$(cat "$d/class")
        rev=$(cat "$d/revision" 2>/dev/null || echo 0x00)
        printf '%s %s: %s:%s (rev %s) prog-if %s\n' "${d##*/0000:}" "$(echo "$class" | cut -c3-6)" \
            "$(cut -c3- "$d/vendor")" "$(cut -c3- "$d/device")" "${rev#0x}" "$(echo "$class" | cut -c7-8)"
    done
}

# The ivshmem-doorbell devices (1af4:1110), one per agent, in slot order (agent 0 first).
ivshmem_devices() {
    for d in /sys/bus/pci/devices/*; do
        if [ "$(cat "$d/vendor") $(cat "$d/device")" = "0x1af4 0x1110" ]; then
            echo "$d"
        fi
    done
}

# Start address of BAR n of device directory $1.
bar_start() {
    sed -n "$(($2 + 1))p" "$1/resource" | cut -d' ' -f1
}

# Size of BAR n of device directory $1.
bar_size() {
    line=$(sed -n "$(($2 + 1))p" "$1/resource")
    echo $(($(echo "$line" | cut -d' ' -f2) - $(echo "$line" | cut -d' ' -f1) + 1))
}

# The kernel log has no warning, BUG, oops or unhandled interrupt ("irq N: nobody cared").
kernel_log_clean() {
    bad=$(dmesg | grep -E 'WARNING:|BUG:|Oops|general protection|Call Trace|kernel BUG|RIP:|nobody cared' | head -3)
    if [ -n "$bad" ]; then
        echo "$bad"
        return 1
    fi
    echo "no WARN/BUG/oops in dmesg"
}

# bp$1's ethtool -S counter $2 (the module's or, with the agent_ prefix, the agent's).
stat_of() {
    ethtool_stats bp$1 | awk -v n="$2" '$1 == n { print $2 }'
}

# carrier_went_down N DOWNS SECONDS: bp$N's carrier_down_count passes DOWNS within SECONDS. A drop can
# be shorter than any polling interval, so the kernel's count is watched, not the carrier.
carrier_went_down() {
    for _ in $(seq $(($3 * 10))); do
        now=$(cat /sys/class/net/bp$1/carrier_down_count)
        if [ "$now" -gt "$2" ]; then
            echo "carrier_down_count $2 -> $now"
            return 0
        fi
        sleep 0.1
    done
    echo "bp$1: carrier_down_count still $2 after $3 s"
    return 1
}

# Sets heartbeat_param (insmod's argument) and heartbeat_ms: up to 4 agents, the module's default
# heartbeat bound (3 s). A full chassis shares the machine's two cores among twenty emulators and the
# guest: an agent's emulated clock can then run ten times slower than the host's, and its heartbeat
# would be taken for a stopped processor; it gets a minute.
heartbeat_bound() {
    if [ $agents -le 4 ]; then
        heartbeat_param=
        heartbeat_ms=3000
    else
        heartbeat_param=heartbeat_timeout_ms=60000
        heartbeat_ms=60000
    fi
}

# ---- shared by the bpctl and update suites (they set host_addr, last; init sets agents, agent_addr) ----

# JSON syntax check of stdin (RFC 8259's grammar, string escapes included): busybox has no JSON tool.
json_valid() {
    awk '
    function ch() { return substr(s, p, 1) }
    function ws() { while (p <= n && index(" \t\r\n", ch()) > 0) p++ }
    function fail(why) { if (!err) err = why " at offset " p; return 0 }
    function str(   c) {
        if (ch() != "\"") return fail("string expected")
        p++
        while (p <= n) {
            c = ch()
            if (c == "\"") { p++; return 1 }
            if (c == "\\") {
                p++; c = ch()
                if (c == "u") { if (substr(s, p + 1, 4) !~ /^[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]$/) return fail("bad \\u escape"); p += 4 }
                else if (index("\"\\/bfnrt", c) == 0) return fail("bad escape")
            } else if (c < " ") return fail("control character in string")
            p++
        }
        return fail("unterminated string")
    }
    function num(   t) {
        t = substr(s, p)
        if (!match(t, /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) return fail("bad number")
        p += RLENGTH
        return 1
    }
    function lit(w) { if (substr(s, p, length(w)) != w) return fail("bad literal"); p += length(w); return 1 }
    function val(   c) {
        ws(); c = ch()
        if (c == "{") return obj()
        if (c == "[") return arr()
        if (c == "\"") return str()
        if (c == "t") return lit("true")
        if (c == "f") return lit("false")
        if (c == "n") return lit("null")
        return num()
    }
    function obj() {
        p++; ws()
        if (ch() == "}") { p++; return 1 }
        while (1) {
            ws(); if (!str()) return 0
            ws(); if (ch() != ":") return fail("colon expected"); p++
            if (!val()) return 0
            ws()
            if (ch() == ",") { p++; continue }
            if (ch() == "}") { p++; return 1 }
            return fail("comma or } expected")
        }
    }
    function arr() {
        p++; ws()
        if (ch() == "]") { p++; return 1 }
        while (1) {
            if (!val()) return 0
            ws()
            if (ch() == ",") { p++; continue }
            if (ch() == "]") { p++; return 1 }
            return fail("comma or ] expected")
        }
    }
    { s = s $0 "\n" }
    END {
        n = length(s); p = 1; err = ""
        ok = val()
        ws()
        if (ok && p <= n) { ok = 0; fail("text after the JSON value") }
        if (!ok) { print "invalid JSON: " err; exit 1 }
        print "valid JSON, " n " bytes"
    }
    '
}

netdevs_appear() {
    for _ in $(seq 100); do
        n=0
        for i in $(seq 0 $last); do [ -e /sys/class/net/bp$i ] && n=$((n + 1)); done
        if [ "$n" = "$agents" ]; then
            echo "bp0..bp$last present"
            return 0
        fi
        sleep 0.1
    done
    echo "only $n of $agents netdevs after 10 s: $(ls /sys/class/net | tr '\n' ' ')"
    return 1
}

configure() {
    for i in $(seq 0 $last); do
        ip addr add $host_addr dev bp$i || return 1
        ip link set bp$i up || return 1
    done
}

# Agents with identity records (the demo, the soak): agent n is 10.83.n.2, this host 10.83.n.1 on bpn,
# one subnet per agent as a chassis is wired (a server that does not bind to a device, in.tftpd, then
# answers each agent through its own netdev).
configure_slots() {
    for i in $(seq 0 $last); do
        ip addr add 10.83.$i.1/24 dev bp$i || return 1
        ip link set bp$i up || return 1
    done
    echo "bp0..bp$last: 10.83.0.1/24 .. 10.83.$last.1/24"
}

# The agent answers through bp$1 at $2, else $agent_addr (it may still be waiting for a DHCP lease
# before its static address); the reply also leaves the neighbour entry bpctl takes the agent's
# address from.
agent_answers() {
    addr=${2:-$agent_addr}
    for t in $(seq 30); do
        if ping -I bp$1 -c 1 -W 1 $addr > /dev/null 2>&1; then
            echo "first reply on try $t"
            return 0
        fi
    done
    echo "no reply from $addr through bp$1 within 30 s"
    return 1
}

# exit status $1 and a message matching $2 from the rest of the command line.
fails_with() {
    want=$1
    pattern=$2
    shift 2
    text=$("$@" 2>&1)
    rc=$?
    [ $rc = "$want" ] || { echo "exit $rc, expected $want: $text"; return 1; }
    echo "$text" | grep -q -- "$pattern" || { echo "no '$pattern' in: $text"; return 1; }
    echo "exit $rc: $text"
}

# Start tftpd-hpa's in.tftpd serving $tftp_root on port 69 (pid in /tmp/tftpd.pid) and check it runs.
tftp_server() {
    # The probe below fetches over the loopback interface.
    ip link set lo up
    /usr/sbin/in.tftpd -L -s $tftp_root -a 0.0.0.0:69 -u root > /tmp/tftpd.log 2>&1 &
    echo $! > /tmp/tftpd.pid
    sleep 0.5
    kill -0 "$(cat /tmp/tftpd.pid)" 2>/dev/null || { echo "in.tftpd exited: $(cat /tmp/tftpd.log)"; return 1; }
    # A fetch through the server, when busybox has a TFTP client.
    if busybox tftp --help > /dev/null 2>&1 || busybox --list | grep -qx tftp; then
        echo probe > $tftp_root/probe.txt
        busybox tftp -g -r probe.txt -l /tmp/probe.txt 127.0.0.1 || { echo "a local TFTP fetch failed"; return 1; }
        cmp -s $tftp_root/probe.txt /tmp/probe.txt || { echo "the local TFTP fetch differs"; return 1; }
        echo "in.tftpd serves $tftp_root (pid $(cat /tmp/tftpd.pid)); a local fetch matches"
    else
        echo "in.tftpd running (pid $(cat /tmp/tftpd.pid)) on $tftp_root"
    fi
}

# ---- shared by the update and soak suites (they set version, the image's) ----

# The image's version (header bytes 8..12, little-endian: major << 16 | minor << 8 | patch).
image_version() {
    v=$(od -An -tu4 -j8 -N4 "$1" | tr -d ' ')
    echo "$(((v >> 16) & 255)).$(((v >> 8) & 255)).$((v & 255))"
}

# The row of `bpctl list` for bp$1 as positional fields: # AGENT PCI LINK STATE FIRMWARE BOOT TRIAL
# CONFIRMED VERSION IP UPTIME ...
list_row() {
    bpctl list 2>/dev/null | awk -v d=bp$1 '$2 == d'
}

# boots_as N BOOT CONFIRMED: bp$N's row shows link up, running, BOOT (flash/A, flash/B, netboot,
# recovery; a shell pattern such as flash/[AB]), the image's version, a numeric uptime, and when CONFIRMED is yes or no, that.
boots_as() {
    row=$(list_row $1)
    [ -n "$row" ] || { echo "no row for bp$1 in: $(bpctl list 2>&1)"; return 1; }
    echo "$row"
    set -- $1 $2 $3 $row
    n=$1 boot=$2 confirmed=$3
    shift 3
    [ "$4" = up ] || { echo "bp$n: link '$4', expected up"; return 1; }
    [ "$5" = running ] || { echo "bp$n: state '$5', expected running"; return 1; }
    case "$7" in
        $boot) ;;
        *) echo "bp$n: boot '$7', expected $boot"; return 1 ;;
    esac
    [ "$confirmed" = any ] || [ "$9" = "$confirmed" ] || { echo "bp$n: confirmed '$9', expected $confirmed"; return 1; }
    [ "${10}" = "$version" ] || { echo "bp$n: version '${10}', expected $version"; return 1; }
    case "${12}" in
        '' | *[!0-9]*) echo "bp$n: uptime '${12}' is not a number"; return 1 ;;
    esac
}

# Wait (up to 60 s) until bp$1 is back up with carrier and answers (after a reset the agent takes a few
# seconds to get its address).
back_up() {
    bpnet-guest carrier bp$1 up 60 > /dev/null || { echo "bp$1: no carrier within 60 s"; return 1; }
    agent_answers $1 10.83.$1.2
}
