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
