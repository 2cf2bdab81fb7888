//! Valid traffic through the host model's link: the ARP exchanges and pings a hostile run interleaves
//! with its actions, and that the recovery must get through.

use bpnet_test_support::frames;

use super::{AGENT_IP, ANSWER_STEPS, ATTEMPTS, HOST_IP, HOST_MAC};
use crate::host::{self, HostLink, RunError};
use crate::Board;

/// "Who has 10.83.49.2?" from the host.
pub fn arp_request() -> Vec<u8> {
    frames::arp_request(HOST_MAC, HOST_IP, AGENT_IP)
}

fn echo_request(agent_mac: [u8; 6], seq: u16, payload: &[u8]) -> Vec<u8> {
    frames::echo_request((HOST_MAC, HOST_IP), (agent_mac, AGENT_IP), 0xf022, seq, payload)
}

/// The sender's MAC, if `f` is an ARP reply to the host.
fn arp_reply_mac(f: &[u8]) -> Option<[u8; 6]> {
    frames::arp_reply(f).filter(|r| r.eth_dst == HOST_MAC).map(|r| r.sender.0)
}

/// The echo's payload, if `f` is the reply to `seq`.
fn echo_reply(f: &[u8], seq: u16) -> Option<Vec<u8>> {
    frames::echo_reply(f)
        .filter(|r| r.eth_dst == HOST_MAC && r.ip_src == AGENT_IP && r.seq == seq)
        .map(|r| r.payload.to_vec())
}

/// Send an ARP request or a ping through `link` and wait for its answer, asking again every
/// [`ANSWER_STEPS`] slices up to [`ATTEMPTS`] times: the agent's stack answers only once it has an
/// address (a DHCP lease, or the static fallback some seconds after its first link-up), and it drops a
/// frame it cannot answer yet. A ping is preceded by an ARP exchange: the stack learns the host's MAC
/// address only from ARP, and a link that the hostile host broke may come back to an agent that never saw
/// one.
pub(super) fn exchange(board: &mut Board, link: &mut HostLink, ping: bool, payload: u16) -> Result<(), String> {
    exchange_for(board, link, ping, payload).map(|_| ())
}

/// [`exchange`], returning the agent's MAC from its ARP reply (the ping goes to it).
fn exchange_for(board: &mut Board, link: &mut HostLink, ping: bool, payload: u16) -> Result<[u8; 6], String> {
    let mut agent_mac = [0u8; 6];
    if ping {
        agent_mac = exchange_for(board, link, false, 0)?;
    }
    let seq = payload;
    let data: Vec<u8> = (0..payload).map(|i| (i as u8).wrapping_mul(13).wrapping_add(7)).collect();
    let frame = if ping { echo_request(agent_mac, seq, &data) } else { arp_request() };
    let what = if ping { "ping" } else { "ARP" };
    for _ in 0..ATTEMPTS {
        // A full TX ring empties as the agent runs; the answer check below drives it.
        let sent = link.send(board, &frame).map_err(|e| format!("send: {e}"))?;
        let mut got = false;
        let mut wrong = None;
        let answered = host::run_until(
            board,
            link,
            |l| {
                while let Some(f) = l.recv() {
                    if ping {
                        match echo_reply(&f, seq) {
                            Some(p) if p == data => got = true,
                            Some(_) => wrong = Some("echo payload differs"),
                            None => {}
                        }
                    } else if let Some(mac) = arp_reply_mac(&f) {
                        agent_mac = mac;
                        got = true;
                    }
                }
                got || wrong.is_some()
            },
            ANSWER_STEPS,
        );
        match answered {
            Ok(_) if wrong.is_some() => return Err(format!("{what} of {payload} bytes: {}", wrong.unwrap_or(""))),
            Ok(_) => return Ok(agent_mac),
            Err(RunError::Timeout { .. }) if !sent || !got => continue,
            Err(e) => return Err(format!("{what} of {payload} bytes: {e}")),
        }
    }
    Err(format!("{what} of {payload} bytes: no answer after {ATTEMPTS} attempts of {ANSWER_STEPS} slices"))
}
