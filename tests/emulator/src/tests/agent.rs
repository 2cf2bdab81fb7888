//! The PCI function behind QEMU's proxy with a hand-assembled program instead of the firmware: what
//! happens when the firmware never releases the configuration lock.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{boot, idle, program, spec};
use crate::proxy::{self, AgentFunction, Source};

#[test]
fn a_config_cycle_held_too_long_is_a_master_abort() {
    let mut a = program();
    idle(&mut a);
    let mut board = boot(&spec(&a));
    board.set_standalone_host(false);
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let mut function = AgentFunction::start(Source::Connected(ours), board.core_stopper(), None, None, "test").unwrap();
    function.set_config_retry_limit(Duration::from_millis(200));
    let stats = function.stats();
    board.attach_live_host(Box::new(function));
    let guest = std::thread::spawn(move || {
        let body = [0u32.to_le_bytes(), 0u32.to_le_bytes(), 4i32.to_le_bytes()].concat();
        let mut msg = proxy::header(proxy::CMD_PCI_CFGREAD, body.len() as u64).to_vec();
        msg.extend_from_slice(&body);
        let start = Instant::now();
        theirs.write_all(&msg).unwrap();
        let mut reply = [0u8; 24];
        theirs.read_exact(&mut reply).unwrap();
        (u64::from_le_bytes(reply[16..].try_into().unwrap()), start.elapsed())
    });
    board.run();
    let (value, took) = guest.join().unwrap();
    assert_eq!(value, 0xFFFF_FFFF, "all ones: a master abort");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert_eq!(board.host_end(), Some("the host closed the connection"));
    assert_eq!((stats.get().config_held, stats.get().config_given_up), (1, 1));
    assert_eq!(board.function_stats().master_aborts, 1);
    assert!(board.config_locked());
}
