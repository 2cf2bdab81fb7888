//! The host half of the data path on the emulated board: the host model (`bpnet-test-support`'s
//! [`HostLink`], what the kernel module does for one agent) over the board's BAR, message unit and host
//! RAM, and the loops that run the firmware and the host in turns.

use std::fmt;

use bpnet_contract::{shared, Error, EMULATED_BAR_ADDRESS};
pub use bpnet_test_support::host::{is_ipv4_tcp_udp, Backplane, HostAccessError, HostLink, LinkError, Params, Stats};

use crate::{Board, Outcome};

/// Instructions of one emulator slice in [`run_until`]: about 4 ms of virtual time.
pub const SLICE_INSTRUCTIONS: u64 = 2_000_000;

/// Why running the board with a link failed.
#[derive(Debug)]
pub enum RunError {
    /// The link refused something, or could not be set up.
    Link(LinkError),
    /// The emulated board stopped (halted, faulted, unmodelled access).
    Board(Outcome),
    /// [`run_until`] ran out of steps.
    Timeout { steps: usize },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Link(e) => write!(f, "{e}"),
            RunError::Board(outcome) => write!(f, "board stopped: {outcome:?}"),
            RunError::Timeout { steps } => write!(f, "condition not met after {steps} steps"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<LinkError> for RunError {
    fn from(e: LinkError) -> Self {
        RunError::Link(e)
    }
}

impl From<HostAccessError> for RunError {
    fn from(e: HostAccessError) -> Self {
        RunError::Link(LinkError::Access(e))
    }
}

/// The emulated board, with its BAR where the firmware opens it when no host enumerates the bus.
impl Backplane for Board {
    fn bar_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), HostAccessError> {
        self.host_bar_read(bar_address(offset, buf.len())?, buf)
    }
    fn bar_write(&mut self, offset: usize, data: &[u8]) -> Result<(), HostAccessError> {
        self.host_bar_write(bar_address(offset, data.len())?, data)
    }
    fn ring_doorbell(&mut self, bits: u32) {
        self.host_ring_doorbell(bits);
    }
    fn interrupt_asserted(&self) -> bool {
        self.inta_asserted()
    }
    fn read_odr(&mut self) -> u32 {
        self.host_read_odr()
    }
    fn clear_odr(&mut self, bits: u32) {
        self.host_clear_odr(bits);
    }
    fn read_ram(&self, addr: u64, buf: &mut [u8]) -> Result<(), HostAccessError> {
        self.read_host_ram(addr, buf)
    }
    fn write_ram(&mut self, addr: u64, data: &[u8]) -> Result<(), HostAccessError> {
        self.write_host_ram(addr, data)
    }
    fn bar_reads(&self) -> u64 {
        self.host_bar_reads()
    }
    fn bar_writes(&self) -> u64 {
        self.host_bar_writes()
    }
}

/// The PCI address of `len` bytes at `offset` in the BAR, refusing anything outside the shared region.
fn bar_address(offset: usize, len: usize) -> Result<u32, HostAccessError> {
    if offset.checked_add(len).is_none_or(|end| end > shared::LEN) {
        return Err(HostAccessError {
            pci_addr: u64::from(EMULATED_BAR_ADDRESS).saturating_add(offset as u64),
            len,
            reason: format!("outside the {:#x}-byte BAR", shared::LEN),
        });
    }
    // shared::LEN is far below 4 GiB minus the BAR address.
    Ok(EMULATED_BAR_ADDRESS + offset as u32)
}

/// Run the board in slices of [`SLICE_INSTRUCTIONS`] (or until it idles), polling the link after each,
/// until `done` holds. Returns the slices taken.
pub fn run_until(
    board: &mut Board,
    link: &mut HostLink,
    mut done: impl FnMut(&mut HostLink) -> bool,
    max_steps: usize,
) -> Result<usize, RunError> {
    for step in 0..max_steps {
        if done(link) {
            return Ok(step);
        }
        run_slice(board)?;
        link.poll(board)?;
    }
    if done(link) {
        return Ok(max_steps);
    }
    Err(RunError::Timeout { steps: max_steps })
}

/// Run until a received frame satisfies `want` (frames before it are dropped), and return what `want`
/// made of it: the answer to a frame the host sent.
pub fn await_frame<T>(
    board: &mut Board,
    link: &mut HostLink,
    mut want: impl FnMut(&[u8]) -> Option<T>,
    max_steps: usize,
) -> Result<T, RunError> {
    let mut got = None;
    run_until(
        board,
        link,
        |l| {
            while got.is_none() {
                let Some(f) = l.recv() else { break };
                got = want(&f);
            }
            got.is_some()
        },
        max_steps,
    )?;
    Ok(got.expect("run_until returns once the frame came"))
}

/// One slice of the firmware: up to [`SLICE_INSTRUCTIONS`], less if it idles first.
pub fn run_slice(board: &mut Board) -> Result<(), RunError> {
    board.set_max_instructions(Some(board.instructions() + SLICE_INSTRUCTIONS));
    match board.run() {
        Outcome::Idle { .. } | Outcome::InstructionLimit => Ok(()),
        other => Err(RunError::Board(other)),
    }
}

/// Boot to READY and bring the link up: run slices until the header reads READY through the BAR. Each
/// look is one BAR read, taken only when the firmware has idled (done booting) or every eighth slice.
pub fn connect(board: &mut Board, params: Params, max_steps: usize) -> Result<HostLink, RunError> {
    let mut last = RunError::Timeout { steps: max_steps };
    for step in 0..max_steps {
        board.set_max_instructions(Some(board.instructions() + SLICE_INSTRUCTIONS));
        let idle = match board.run() {
            Outcome::Idle { .. } => true,
            Outcome::InstructionLimit => false,
            other => return Err(RunError::Board(other)),
        };
        if !idle && step % 8 != 7 {
            continue;
        }
        match HostLink::up(board, params) {
            Ok(link) => return Ok(link),
            // Not there yet: the window is not open, the header not written, or still RESET.
            Err(e @ (LinkError::Access(_) | LinkError::NotReady(_) | LinkError::Contract(Error::BadMagic(_)))) => {
                last = e.into();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_addresses_stay_in_the_bar() {
        assert_eq!(bar_address(0, 64).unwrap(), EMULATED_BAR_ADDRESS);
        assert_eq!(bar_address(shared::LEN - 4, 4).unwrap(), EMULATED_BAR_ADDRESS + shared::LEN as u32 - 4);
        assert!(bar_address(shared::LEN - 3, 4).is_err());
        assert!(bar_address(usize::MAX, 2).is_err());
    }
}
