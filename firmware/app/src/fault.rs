//! The fault record: what the exception handler leaves in the shared region's board info block for
//! the host (`bpnet.ko`'s health reporter), and the wait for the host's reset after it.
//!
//! Nothing here may rely on the program's state (the fault may have left a lock held or a borrow
//! open): the shared region is read and written through a window of its own, and the uptime and
//! generation are taken from what the program last published there.

use bpnet_contract::bar::{
    self, fault_seq_after, AgentState, BoardInfo, FaultRepr, Header, HostRequest, HostState, RequestRepr,
    BOARD_INFO_LEN, BOOT_BLOCK_LEN, HEADER_LEN,
};
use bpnet_contract::shared;
use e300::exception::Fault;
use mpc8349emds::SharedWindow;

/// Record `fault` (the words, then after a barrier the next sequence number) and show the agent
/// BROKEN. True if a host has the link up: it will see the record and may reset the board.
pub fn record(fault: &Fault) -> bool {
    let mut window = SharedWindow::take();
    let mut header = [0u8; HEADER_LEN];
    window.read(shared::HEADER_OFFSET, &mut header);
    let header = Header::new_unchecked(&header[..]);
    let mut boot = [0u8; BOOT_BLOCK_LEN];
    window.read(shared::BOOT_OFFSET, &mut boot);
    let uptime_s = bar::BootBlock::new_unchecked(&boot[..]).uptime_s();
    let mut block = [0u8; BOARD_INFO_LEN];
    window.read(shared::BOARD_INFO_OFFSET, &mut block);
    let mut info = BoardInfo::new_unchecked(&mut block[..]);
    let seq = fault_seq_after(info.fault_seq());
    let repr = FaultRepr {
        seq,
        vector: fault.vector,
        srr0: fault.srr0,
        srr1: fault.srr1,
        dar: fault.dar,
        dsisr: fault.dsisr,
        generation: header.agent_generation(),
        uptime_s,
    };
    repr.emit_words(&mut info);
    let words = bar::field::board_info::FAULT_VECTOR;
    // `write` ends with a sync: the words reach RAM before the sequence number that publishes them
    // (pairs with bpnet.ko reading fault_seq before the words, bpnet_health_check).
    window.write(shared::BOARD_INFO_OFFSET + words, &block[words..]);
    window.write(shared::BOARD_INFO_OFFSET + bar::field::board_info::FAULT_SEQ, &seq.to_le_bytes());
    window.write(shared::HEADER_OFFSET + bar::field::header::AGENT_STATE, &[AgentState::Broken as u8]);
    header.host_state() == Ok(HostState::Up)
}

/// Wait for the host's reset request in the boot block (polled: interrupts are not to be trusted
/// after a fault), then reset the board; the boot stage starts it again and the record stays.
pub fn await_reset() -> ! {
    let window = SharedWindow::take();
    let mut boot = [0u8; BOOT_BLOCK_LEN];
    window.read(shared::BOOT_OFFSET, &mut boot);
    let mut seen = bar::BootBlock::new_unchecked(&boot[..]).request_seq();
    loop {
        window.read(shared::BOOT_OFFSET, &mut boot);
        match RequestRepr::parse(&bar::BootBlock::new_unchecked(&boot[..]), seen) {
            Ok(Some(r)) if r.request == HostRequest::Reset => {
                crate::println!("fault: reset requested by the host");
                mpc8349emds::immr().reset().hard_reset()
            }
            Ok(Some(r)) => seen = r.seq,
            Err((seq, _)) => seen = seq,
            Ok(None) => {}
        }
    }
}
