//! How much virtual time a DMA transfer takes: the one table of bus parameters (/work/shared/bus-model.md,
//! "The bus model"). Every figure the benchmarks derive from DMA comes from here, so the parameters are
//! fixed with their grounds and printed with the results (`bpnet-emu --describe-bus-model`).
//!
//! Times are in core cycles (= instructions, 1.875 ns). The clocks divide evenly: one 33.33 MHz PCI clock is
//! 16 core cycles, one 66.67 MHz PCI clock 8, one 266.67 MHz CSB cycle 2.

use std::fmt;

use crate::time::{INSTRUCTIONS_PER_CSB_CYCLE, PS_PER_INSTRUCTION};

/// Which backplane bus the board sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BusModel {
    /// 32-bit / 33 MHz CompactPCI with a Pentium-III-era host bridge (the default of the bus model).
    #[default]
    Pci32At33,
    /// 64-bit / 66 MHz: the same bridge behaviour with sustained rates scaled ×4.
    Pci64At66,
}

/// The parameters of one bus model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusTiming {
    /// Short name for command lines and summaries.
    pub name: &'static str,
    pub description: &'static str,
    /// Core cycles per PCI clock.
    pub cycles_per_pci_clock: u64,
    /// Bytes per PCI data clock (bus width).
    pub bytes_per_data_clock: u64,
    /// Bytes per burst: the DMA engine's PCI transactions are cut at this size; a shorter last burst pays
    /// the full overhead.
    pub burst_bytes: u64,
    /// PCI clocks per memory-write burst besides its data clocks (address phase, bridge posting, turnaround).
    pub write_overhead_clocks: u64,
    /// PCI clocks per memory-read-multiple burst besides its data clocks (the bridge's read latency).
    pub read_overhead_clocks: u64,
}

/// Local (CSB) side, the same under both bus models.
///
/// RAM to RAM: 533.33 MB/s = one byte per core cycle = 8 bytes per 4 CSB cycles. Grounds: the CSB runs at
/// 266.67 MHz and is 64 bits wide; a copy moves every 8 bytes as one read beat and one write beat, each
/// counted as 2 CSB cycles (address and data tenure, no pipelining between the channel's reads and writes).
/// This is below the 1066 MB/s a fully pipelined read+write stream could reach and above the bus model's
/// "≥ 500 MB/s".
pub const CSB_CYCLES_PER_BEAT: u64 = 2;
pub const CSB_BEAT_BYTES: u64 = 8;
/// A descriptor fetch from agent RAM: one 32-byte local read (4 read beats).
pub const DESCRIPTOR_BYTES: u64 = 32;

const PCI32: BusTiming = BusTiming {
    name: "pci32",
    description: "32-bit / 33.33 MHz PCI, Pentium-III-era host bridge",
    cycles_per_pci_clock: 16,
    bytes_per_data_clock: 4,
    burst_bytes: 256,
    // 256-byte bursts back to back: 64 data clocks + 7 → 120.2 MB/s (bus model: ≈ 120 MB/s writes).
    write_overhead_clocks: 7,
    // 64 data clocks + 21 → 100.4 MB/s (bus model: ≈ 100 MB/s reads).
    read_overhead_clocks: 21,
};

const PCI64: BusTiming = BusTiming {
    name: "pci64",
    description: "64-bit / 66.67 MHz PCI (the 32-bit/33 MHz rates scaled x4)",
    cycles_per_pci_clock: 8,
    bytes_per_data_clock: 8,
    // The same burst length in clocks (64 data clocks) and the same overheads in clocks: twice the width at
    // twice the clock gives exactly four times the sustained rates.
    burst_bytes: 512,
    write_overhead_clocks: 7,
    read_overhead_clocks: 21,
};

/// Which way a transfer crosses the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Agent RAM to agent RAM (CSB only).
    Local,
    /// Into host RAM: PCI memory-write bursts.
    ToHost,
    /// From host RAM: PCI memory-read-multiple bursts.
    FromHost,
    /// Host RAM to host RAM: each burst read across the bus, then written back.
    HostToHost,
}

impl BusModel {
    pub fn timing(self) -> BusTiming {
        match self {
            BusModel::Pci32At33 => PCI32,
            BusModel::Pci64At66 => PCI64,
        }
    }

    pub fn name(self) -> &'static str {
        self.timing().name
    }

    /// `pci32` / `pci64`.
    pub fn from_name(name: &str) -> Option<BusModel> {
        match name {
            "pci32" => Some(BusModel::Pci32At33),
            "pci64" => Some(BusModel::Pci64At66),
            _ => None,
        }
    }

    /// Core cycles to move `bytes` in `direction`.
    pub fn transfer_cycles(self, direction: Direction, bytes: u64) -> u64 {
        let t = self.timing();
        let bursts = |overhead: u64| {
            let full = bytes / t.burst_bytes;
            let rest = bytes % t.burst_bytes;
            let data_clocks = t.burst_bytes / t.bytes_per_data_clock;
            let mut clocks = full * (data_clocks + overhead);
            if rest > 0 {
                clocks += rest.div_ceil(t.bytes_per_data_clock) + overhead;
            }
            clocks * t.cycles_per_pci_clock
        };
        match direction {
            Direction::Local => local_read_cycles(bytes) * 2,
            Direction::ToHost => bursts(t.write_overhead_clocks),
            Direction::FromHost => bursts(t.read_overhead_clocks),
            Direction::HostToHost => bursts(t.read_overhead_clocks) + bursts(t.write_overhead_clocks),
        }
    }

    /// Core cycles to fetch one 32-byte descriptor from agent RAM (`from_host`: through an outbound window,
    /// one read burst).
    pub fn descriptor_fetch_cycles(self, from_host: bool) -> u64 {
        if from_host {
            self.transfer_cycles(Direction::FromHost, DESCRIPTOR_BYTES)
        } else {
            local_read_cycles(DESCRIPTOR_BYTES)
        }
    }

    /// Sustained payload rate in MB/s (10^6 bytes per second) of a chain of `bytes`-byte descriptors in
    /// `direction`, descriptors in agent RAM, each fetched before its transfer.
    pub fn chained_rate_mb_s(self, direction: Direction, bytes: u64) -> f64 {
        let cycles = self.descriptor_fetch_cycles(false) + self.transfer_cycles(direction, bytes);
        bytes as f64 / (cycles * PS_PER_INSTRUCTION) as f64 * 1e6
    }
}

/// Core cycles for reading `bytes` from agent RAM over the CSB.
fn local_read_cycles(bytes: u64) -> u64 {
    bytes.div_ceil(CSB_BEAT_BYTES) * CSB_CYCLES_PER_BEAT * INSTRUCTIONS_PER_CSB_CYCLE
}

impl fmt::Display for BusModel {
    /// The table, as printed by `--describe-bus-model`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.timing();
        let ns = |cycles: u64| (cycles * PS_PER_INSTRUCTION) as f64 / 1000.0;
        let clock_mhz = 1e6 / (t.cycles_per_pci_clock * PS_PER_INSTRUCTION) as f64;
        let data = t.burst_bytes / t.bytes_per_data_clock;
        writeln!(f, "bus model {}: {} (virtual time; /work/shared/bus-model.md)", t.name, t.description)?;
        writeln!(
            f,
            "  PCI clock {clock_mhz:.2} MHz = {} core cycles, {} bytes per data clock, bursts of {} bytes",
            t.cycles_per_pci_clock, t.bytes_per_data_clock, t.burst_bytes
        )?;
        writeln!(
            f,
            "  DMA into host RAM (memory write): {data} data + {} overhead clocks per burst, {:.1} MB/s sustained",
            t.write_overhead_clocks,
            self.chained_rate_mb_s(Direction::ToHost, 1 << 26)
        )?;
        writeln!(
            f,
            "  DMA from host RAM (memory read multiple): {data} data + {} overhead clocks per burst, {:.1} MB/s sustained",
            t.read_overhead_clocks,
            self.chained_rate_mb_s(Direction::FromHost, 1 << 26)
        )?;
        writeln!(f, "  a shorter last burst pays the full overhead; descriptors are serialised on the bus")?;
        writeln!(
            f,
            "  RAM to RAM: 8 bytes per {} CSB cycles (266.67 MHz, 64-bit, a read and a write beat of {} CSB cycles each) = {:.1} MB/s",
            2 * CSB_CYCLES_PER_BEAT,
            CSB_CYCLES_PER_BEAT,
            self.chained_rate_mb_s(Direction::Local, 1 << 26)
        )?;
        writeln!(
            f,
            "  descriptor fetch: one 32-byte local read = {} core cycles ({:.1} ns)",
            self.descriptor_fetch_cycles(false),
            ns(self.descriptor_fetch_cycles(false))
        )?;
        writeln!(f, "  chained transfers, payload MB/s (descriptor fetch included):")?;
        writeln!(f, "    bytes/descriptor   to host  from host  RAM to RAM")?;
        for bytes in [64u64, 1500, 9000, 65536] {
            writeln!(
                f,
                "    {bytes:>16} {:>9.1} {:>10.1} {:>11.1}",
                self.chained_rate_mb_s(Direction::ToHost, bytes),
                self.chained_rate_mb_s(Direction::FromHost, bytes),
                self.chained_rate_mb_s(Direction::Local, bytes)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_transfers_reach_the_sustained_rates_of_the_bus_model() {
        let pci32 = BusModel::Pci32At33;
        // 256 bytes: 71 clocks × 16 cycles writing, 85 × 16 reading.
        assert_eq!(pci32.transfer_cycles(Direction::ToHost, 256), 71 * 16);
        assert_eq!(pci32.transfer_cycles(Direction::FromHost, 256), 85 * 16);
        // A 4-byte last burst pays the whole overhead.
        assert_eq!(pci32.transfer_cycles(Direction::ToHost, 260), (71 + 1 + 7) * 16);
        let rate = |m: BusModel, d| m.chained_rate_mb_s(d, 1 << 26);
        assert!((rate(pci32, Direction::ToHost) - 120.19).abs() < 0.01);
        assert!((rate(pci32, Direction::FromHost) - 100.39).abs() < 0.01);
        assert!((rate(pci32, Direction::Local) - 533.33).abs() < 0.01);
        let pci64 = BusModel::Pci64At66;
        assert!((rate(pci64, Direction::ToHost) / rate(pci32, Direction::ToHost) - 4.0).abs() < 1e-3);
        assert!((rate(pci64, Direction::FromHost) / rate(pci32, Direction::FromHost) - 4.0).abs() < 1e-3);
        assert_eq!(pci32.descriptor_fetch_cycles(false), 16);
        assert_eq!(pci32.transfer_cycles(Direction::Local, 8), 8);
        assert_eq!(pci32.transfer_cycles(Direction::HostToHost, 256), (71 + 85) * 16);
    }

    #[test]
    fn small_chained_transfers_pay_the_overheads() {
        let pci32 = BusModel::Pci32At33;
        // 64 bytes to the host: fetch 16 + (16 + 7) × 16 = 384 cycles = 720 ns.
        assert_eq!(pci32.descriptor_fetch_cycles(false) + pci32.transfer_cycles(Direction::ToHost, 64), 384);
        let r = |d, b| pci32.chained_rate_mb_s(d, b);
        assert!((r(Direction::ToHost, 64) - 88.89).abs() < 0.01);
        assert!((r(Direction::FromHost, 64) - 56.14).abs() < 0.01);
        assert!((r(Direction::ToHost, 1500) - 119.62).abs() < 0.01);
        assert!((r(Direction::FromHost, 1500) - 99.60).abs() < 0.01);
        let text = pci32.to_string();
        assert!(text.contains("bus model pci32") && text.contains("120.2 MB/s"), "{text}");
        assert_eq!(BusModel::from_name("pci64"), Some(BusModel::Pci64At66));
        assert_eq!(BusModel::from_name("isa"), None);
    }
}
