# The backplane without the kernel module: the guest sees one ivshmem-doorbell device per agent, its BAR2
# is the agent's shared region (the header magic "BPNT" and the agent READY in it), and a doorbell the
# guest rings reaches the agent (the emulator counts them: checked by the harness with EXPECT).
devices=$(ivshmem_devices)
count=$(echo "$devices" | grep -c .)
if [ "$count" = "$agents" ]; then
    result ivshmem-devices pass "$count ivshmem-doorbell devices"
else
    result ivshmem-devices fail "found $count ivshmem-doorbell devices, expected $agents"
fi

i=0
for d in $devices; do
    echo 1 > "$d/enable"
    size=$(bar_size "$d" 2)
    if [ "$size" = $((1 << 20)) ]; then
        result "agent$i-bar2-size" pass "BAR2 is 1 MiB ($d)"
    else
        result "agent$i-bar2-size" fail "BAR2 is $size bytes, expected 1 MiB ($d)"
    fi
    bar2=$(bar_start "$d" 2)
    magic=$(devmem "$bar2" 32)
    # "BPNT" in memory order, read as a little-endian word.
    if [ "$magic" = 0x544E5042 ]; then
        result "agent$i-magic" pass "BPNT at BAR2 $bar2"
    else
        result "agent$i-magic" fail "BAR2+0 reads $magic, expected 0x544E5042 (BPNT)"
    fi
    # agent_state at 0x2c: READY (1) once the firmware is up; it may still be booting.
    state=
    for _ in $(seq 50); do
        state=$(devmem $((bar2 + 0x2c)) 8)
        [ "$state" = 0x01 ] && break
        sleep 0.1
    done
    if [ "$state" = 0x01 ]; then
        result "agent$i-ready" pass "agent_state READY"
    else
        result "agent$i-ready" fail "agent_state $state, expected READY (0x01)"
    fi
    # Ring the agent's work vector (peer 0, vector 0) three times, apart, through BAR0 + 12. Whether
    # they arrived is the emulator's to say (the EXPECT below); ringing is no check of its own.
    bar0=$(bar_start "$d" 0)
    for _ in 1 2 3; do
        devmem $((bar0 + 12)) 32 0
        sleep 0.1
    done
    echo "bptest: agent$i: 3 rings of vector 0" > /dev/console
    out "EXPECT agent $i ivshmem_work_doorbells = 3"
    # The firmware announced READY with the link doorbell (an MSI-X message on vector 1).
    out "EXPECT agent $i ivshmem_link_interrupts >= 1"
    i=$((i + 1))
done
check kernel-log-clean kernel_log_clean
