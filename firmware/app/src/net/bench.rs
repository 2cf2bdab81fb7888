//! The ring path alone, for `cargo xtask bench` (the ring-bench image): no stack, so the
//! instructions the agent spends per frame are the driver's and the ring engine's.
//!
//! Frames from the host are taken and released at once; frames to the host go out as fast as the
//! host posts buffers for them, from buffers filled once at start-up with one test frame, so no
//! copy is counted either. The main loop's shape is the data path's: poll while there is work,
//! sleep on the doorbell or the DMA interrupt when there is none.

use bpnet_contract::bar::AgentState;
use mpc8349::ipic::vector;

use super::hw::{self, NetRam, BUFFERS};
use super::RingEngine;
use crate::irq;

/// The frame sent to the host: a full 1500-byte-MTU Ethernet frame.
pub const FRAME_LEN: usize = 1514;
/// Its EtherType: IEEE 802 local experimental, so no stack takes it for its own.
const ETHERTYPE: [u8; 2] = [0x88, 0xB5];

pub fn run(engine: &mut RingEngine, mac: [u8; 6]) -> ! {
    for i in 0..BUFFERS {
        let frame = NetRam::frame_mut(hw::to_host_buffer(i), FRAME_LEN as u32);
        frame[..6].fill(0xFF);
        frame[6..12].copy_from_slice(&mac);
        frame[12..14].copy_from_slice(&ETHERTYPE);
        for (j, b) in frame[14..].iter_mut().enumerate() {
            *b = j as u8;
        }
    }
    defmt::info!("ring-bench: reflecting {=usize}-byte frames", FRAME_LEN);
    let immr = mpc8349emds::immr();
    loop {
        if irq::take_doorbells() != 0 {
            engine.doorbell();
        }
        engine.poll();
        super::log_refusal(engine);
        let mut busy = false;
        while let Some(received) = engine.receive() {
            engine.release(received.buffer);
            busy = true;
        }
        if engine.state() == AgentState::Running && engine.host().is_some_and(|h| usize::from(h.mtu) + 14 >= FRAME_LEN)
        {
            // Every to-host buffer holds the frame already: queue it without writing it again.
            while let Ok(tx) = engine.transmit_buffer() {
                if engine.commit_transmit(tx, FRAME_LEN, false).is_err() {
                    break;
                }
                busy = true;
            }
        }
        if !busy {
            if engine.dma().in_flight() {
                immr.ipic().enable(vector::DMA);
            }
            e300::msr::without_interrupts(|| {
                if !irq::doorbells_pending() {
                    e300::wait_for_interrupt();
                }
            });
        }
    }
}
