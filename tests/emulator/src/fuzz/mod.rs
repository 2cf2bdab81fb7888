//! A hostile host for the agent firmware's data path: turns arbitrary bytes (or a list of [`Action`]s)
//! into BAR writes, host RAM writes and doorbells against the real firmware on the emulated board, mixed
//! with valid traffic through [`HostLink`](crate::host::HostLink), and checks what the contract promises about hostile input
//! ("Not trusted" in the design): the agent does not halt, fault or stop on an unmodelled access, does not
//! hang, never lets its DMA reach outside its RAM and the outbound windows, never writes host RAM outside
//! the status block and the buffers the host posted, and counts every refused value in the BAR counters.
//!
//! How counting is checked. The firmware sleeps until a doorbell, so a write the agent has not been rung
//! for may be seen at any later wake-up. A *checked* action therefore first flushes (rings the agent and
//! runs it until it sleeps), takes the counters, the agent state and the DMA statistics, acts, rings,
//! runs until the agent sleeps again and compares the differences with what the ring engine's rules
//! predict for that input and that starting state (a bad descriptor counts once when the agent consumes
//! it; a bad producer index counts once and breaks the link, and only a RUNNING agent looks at indexes; a
//! refused host configuration counts once per host generation). *Chaos* actions (scribbles, torn updates,
//! event indexes, stray doorbells, runs of arbitrary length) are checked only by the invariants.
//!
//! Host RAM is small ([`HOST_RAM_SIZE`]) and filled with a canary pattern, so the outbound windows (2 GiB)
//! reach past it: a descriptor inside them but beyond host RAM is one the agent cannot know to be
//! bad, and its DMA ends in a PCI master abort (a transfer error the test provokes on purpose and
//! predicts). Every other transfer error is a firmware bug: a bad address must be refused before the DMA.
//!
//! Recovery: after the actions, a fresh host initialisation (new generation, valid fields) must bring the
//! link back to RUNNING and an ARP exchange and a ping must go through the link.
//!
//! The parts: [`action`] turns bytes into actions, [`hostile`] performs them against the board,
//! [`oracle`] predicts what each checked action must be counted as and checks the invariants, and
//! [`traffic`] is the valid traffic (ARP, ping) through the link.

mod action;
mod hostile;
mod oracle;
mod traffic;

pub use action::{decode, Action, AddrKind, BadField, Options, Rng};
pub use hostile::HostileHost;
pub use oracle::{Failure, Report};
pub use traffic::arp_request;

use std::ops::Range;

use bpnet_contract::bar::field;
use bpnet_contract::{logring, shared};

/// Host RAM of a hostile run: the link's status block and buffers, scratch space and canary, and small
/// enough to check byte by byte after every input. The outbound windows reach far beyond it.
pub const HOST_RAM_SIZE: u64 = 4 << 20;
/// The host bus addresses the firmware's DMA reaches, `[0, DMA_REACH)`: the firmware publishes it as
/// the agent info block's `dma_reach` (its board's `mpc8349emds::HOST_REACH_BYTES`), and
/// [`HostileHost::boot`] checks the published value against this one.
pub const DMA_REACH: u64 = 2 << 30;
/// Where the link keeps its status block and buffers ([`Params::host_ram_base`](crate::host::Params)).
pub const LINK_BASE: u64 = 0x10_0000;
/// Host RAM the hostile host puts its own frames in (read by the agent's DMA only).
pub const SCRATCH_TX: u64 = 0x30_0000;
/// Host RAM the hostile host posts its own RX buffers in.
pub const SCRATCH_RX: u64 = 0x31_0000;
/// Bytes of each scratch area.
pub const SCRATCH_LEN: u64 = 0x1_0000;
/// Instructions per slice while waiting for the agent to go back to sleep: about 1 ms of virtual time.
const SETTLE_SLICE: u64 = 500_000;
/// Slices a settle may take before the agent counts as hung: 100 ms of virtual time without sleeping.
const SETTLE_SLICES: usize = 200;
/// Slices (of [`SLICE_INSTRUCTIONS`](crate::host::SLICE_INSTRUCTIONS), less when the agent idles) to
/// wait for an answer through the link before asking again, and how often to ask.
const ANSWER_STEPS: usize = 100;
const ATTEMPTS: usize = 20;
/// The agent's and the host model's addresses (the firmware's static configuration).
const AGENT_IP: [u8; 4] = [10, 83, 49, 2];
const HOST_IP: [u8; 4] = [10, 83, 49, 1];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// BAR offsets of the header's `agent_state` byte, and of the host's state byte after it.
const AGENT_STATE: usize = shared::HEADER_OFFSET + field::header::AGENT_STATE;
const HOST_STATE: usize = shared::HEADER_OFFSET + field::header::HOST_STATE;
/// BAR offsets of the doorbell words; `rx_used_event` and `tx_used_event` go in one write.
const TX_PROD: usize = shared::DOORBELLS_OFFSET + field::doorbells::TX_PROD;
const RX_PROD: usize = shared::DOORBELLS_OFFSET + field::doorbells::RX_PROD;
const USED_EVENTS: usize = shared::DOORBELLS_OFFSET + field::doorbells::RX_USED_EVENT;
/// The log ring's header in the BAR: magic, capacity, head, generation.
const LOG_RING_HEADER: Range<usize> = shared::LOG_RING_OFFSET..shared::LOG_RING_OFFSET + logring::HEADER_LEN;
/// The shortest frame the agent's stack sends (an ARP reply, unpadded).
const MIN_FRAME: u64 = 42;
/// The ring size the firmware publishes (checked against the header at set-up).
const RING_ENTRIES: u32 = 256;

fn setup_failure(what: String) -> Failure {
    Failure { action: None, what, context: String::new() }
}

/// Boot `elf`, perform `actions` and the recovery; the invariants hold or the failure says which broke.
pub fn run_actions(elf: &[u8], actions: &[Action]) -> Result<Report, Failure> {
    HostileHost::boot(elf)?.run(actions)
}

/// The fuzz target: any bytes.
pub fn run_input(elf: &[u8], input: &[u8], options: Options) -> Result<Report, Failure> {
    run_actions(elf, &decode(input, options))
}
