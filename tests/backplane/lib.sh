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

# The kernel log has no warning, BUG or oops.
kernel_log_clean() {
    bad=$(dmesg | grep -E 'WARNING:|BUG:|Oops|general protection|Call Trace|kernel BUG|RIP:' | head -3)
    if [ -n "$bad" ]; then
        echo "$bad"
        return 1
    fi
    echo "no WARN/BUG/oops in dmesg"
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
