//! What the hostile host checks: the prediction of each checked action, the invariants every run
//! keeps (host RAM outside what the agent may write untouched), and how a run reports.

use std::fmt;

use bpnet_contract::bar::{counter, desc_flags, AgentState, Counters, COUNTERS_LEN, COUNTER_SLOTS};
use bpnet_contract::shared;

use super::action::Action;
use super::hostile::{HostileHost, DATA_CHANNEL};
use super::{AGENT_STATE, DMA_REACH, HOST_RAM_SIZE};

/// Why a hostile run failed: which invariant, after which action.
#[derive(Debug)]
pub struct Failure {
    /// Index of the action in the sequence (`None`: set-up or the final recovery).
    pub action: Option<usize>,
    pub what: String,
    /// The end of the console and the last log lines, for the report.
    pub context: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Some(i) => write!(f, "after action {i}: {}", self.what)?,
            None => write!(f, "{}", self.what)?,
        }
        write!(f, "\n{}", self.context)
    }
}

impl std::error::Error for Failure {}

/// What a hostile run injected and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub actions: usize,
    /// Checked actions whose counter differences matched.
    pub checked: usize,
    /// Bad inputs injected per class (each predicted to be counted).
    pub bad_descriptors: u64,
    pub bad_indexes: u64,
    pub bad_host_config: u64,
    /// DMA transfer errors provoked on purpose (addresses beyond host RAM inside the window).
    pub provoked_transfer_errors: u64,
    /// Valid exchanges through the link, recovery included.
    pub exchanges: usize,
    /// Host re-initialisations.
    pub reinits: usize,
    /// Counters at the end.
    pub counters: Vec<(&'static str, u32)>,
}

impl Report {
    /// The counter `name` (as [`bpnet_contract::bar::COUNTERS`] names it) at the end of the run.
    pub fn counter(&self, name: &str) -> u32 {
        self.counters.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v)
    }
}

/// Inclusive bounds of a predicted counter difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span(pub(super) u64, pub(super) u64);

impl Span {
    pub(super) const ZERO: Span = Span(0, 0);
    pub(super) fn exactly(n: u64) -> Span {
        Span(n, n)
    }
    pub(super) fn contains(self, n: u64) -> bool {
        (self.0..=self.1).contains(&n)
    }
}

/// A checked action's prediction.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expect {
    pub(super) bad_descriptors: Span,
    pub(super) bad_indexes: Span,
    pub(super) bad_host_config: Span,
    pub(super) tx_dma_errors: Span,
    pub(super) rx_dma_errors: Span,
    /// DMA transfer errors (TE) on the data path's channel.
    pub(super) transfer_errors: Span,
    /// The agent state after, if predictable.
    pub(super) state: Option<AgentState>,
}

impl Expect {
    pub(super) fn nothing() -> Expect {
        Expect {
            bad_descriptors: Span::ZERO,
            bad_indexes: Span::ZERO,
            bad_host_config: Span::ZERO,
            tx_dma_errors: Span::ZERO,
            rx_dma_errors: Span::ZERO,
            transfer_errors: Span::ZERO,
            state: None,
        }
    }
}

/// What is observed before and after a checked action.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    pub(super) counters: [u32; COUNTER_SLOTS],
    pub(super) state: AgentState,
    pub(super) transfer_errors: u64,
    pub(super) log_lines: usize,
}

/// How a descriptor fares: (refused, transfer errors of its DMA), each as the bounds over the agent's
/// largest frame (`max_len`: between the smallest and the largest the agent may allow) and the lengths its
/// DMA may move (`copy`).
pub(super) fn verdict(addr: u64, len: u32, flags: u16, max_len: Span, copy: Span) -> (Span, Span) {
    let refused = |max: u64| {
        let window = addr.checked_add(u64::from(len)).is_some_and(|end| end <= DMA_REACH);
        len == 0 || u64::from(len) > max || !window || flags & !desc_flags::ALL != 0
    };
    let faults = |n: u64| u64::from(addr.saturating_add(n) > HOST_RAM_SIZE);
    let (strict, lenient) = (refused(max_len.0), refused(max_len.1));
    let refused = Span(u64::from(lenient), u64::from(strict));
    let faults = if lenient { Span::ZERO } else { Span(if strict { 0 } else { faults(copy.0) }, faults(copy.1)) };
    (refused, faults)
}

impl HostileHost {
    pub(super) fn snapshot(&mut self) -> Result<Snapshot, String> {
        let mut raw = [0u8; COUNTERS_LEN];
        self.bar_read(shared::COUNTERS_OFFSET, &mut raw)?;
        let view = Counters::new_unchecked(&raw[..]);
        let counters = std::array::from_fn(|slot| view.get(slot).unwrap_or(0));
        let mut state = [0u8];
        self.bar_read(AGENT_STATE, &mut state)?;
        let state = AgentState::try_from(state[0]).map_err(|e| format!("agent_state in the BAR: {e}"))?;
        let dma = &self.board.dma_stats()[DATA_CHANNEL];
        Ok(Snapshot { counters, state, transfer_errors: dma.errors, log_lines: self.board.log_lines().len() })
    }

    /// Host RAM outside what the agent may write must still hold what the host wrote.
    pub(super) fn check_canary(&self) -> Result<(), String> {
        let mut ram = vec![0u8; HOST_RAM_SIZE as usize];
        self.board.read_host_ram(0, &mut ram).map_err(|e| format!("host RAM: {e}"))?;
        let mut writable = self.writable.clone();
        writable.sort_by_key(|r| r.start);
        let mut at = 0u64;
        let check = |from: u64, to: u64| -> Result<(), String> {
            let (f, t) = (from as usize, to as usize);
            if let Some(i) = ram[f..t].iter().zip(&self.shadow[f..t]).position(|(a, b)| a != b) {
                let addr = from + i as u64;
                return Err(format!(
                    "host RAM at {addr:#x} was written ({:#04x}, expected {:#04x}) outside the status block and \
                     the posted buffers",
                    ram[f + i],
                    self.shadow[f + i]
                ));
            }
            Ok(())
        };
        for r in &writable {
            if r.start > at {
                check(at, r.start)?;
            }
            at = at.max(r.end);
        }
        check(at, HOST_RAM_SIZE)
    }

    pub(super) fn compare(
        &self,
        action: &Action,
        before: &Snapshot,
        after: &Snapshot,
        expect: &Expect,
    ) -> Result<(), String> {
        let delta = |slot: usize| u64::from(after.counters[slot].wrapping_sub(before.counters[slot]));
        let checks = [
            ("bad_descriptors", delta(counter::BAD_DESCRIPTORS), expect.bad_descriptors),
            ("bad_indexes", delta(counter::BAD_INDEXES), expect.bad_indexes),
            ("bad_host_config", delta(counter::BAD_HOST_CONFIG), expect.bad_host_config),
            ("tx_dma_errors", delta(counter::TX_DMA_ERRORS), expect.tx_dma_errors),
            ("rx_dma_errors", delta(counter::RX_DMA_ERRORS), expect.rx_dma_errors),
            ("DMA transfer errors", after.transfer_errors - before.transfer_errors, expect.transfer_errors),
        ];
        for (name, got, want) in checks {
            if !want.contains(got) {
                return Err(format!(
                    "{name} grew by {got}, expected {}..={} (agent {:?} before, {:?} after)",
                    want.0, want.1, before.state, after.state
                ));
            }
        }
        if let Some(state) = expect.state {
            if after.state != state {
                return Err(format!("agent {:?} after, expected {state:?} (was {:?})", after.state, before.state));
            }
        }
        // The firmware logs its state changes; a refusal that breaks the link must show in the log.
        if !self.log_tampered && before.state != AgentState::Broken && after.state == AgentState::Broken {
            let logged = self.board.log_lines()[before.log_lines..].iter().any(|l| l.contains("agent state 3"));
            if !logged {
                return Err(format!("{action:?} broke the link without a log line saying so"));
            }
        }
        Ok(())
    }
}
