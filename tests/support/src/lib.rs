//! What bpnet's tests share, written once: the host half of the data path, what the kernel module does
//! for one agent ([`host`]), driven against the real ring engine over fake memories and against the
//! emulated board alike; the few frames tests build and read by hand ([`frames`]); a fake NOR part with
//! power cuts ([`nor`]); and, with feature `wire`, the in-memory Ethernet wire smoltcp runs over in
//! the portable crates' tests and on the emulator's host side (`wire`).
//!
//! A development crate: `publish = false`, a dev-dependency of the portable crates and a dependency
//! of the board emulator only, never of the firmware.
#![forbid(unsafe_code)]

pub mod frames;
pub mod host;
pub mod nor;
#[cfg(feature = "wire")]
pub mod wire;
