//! Register facts of the MPC8349E that are tables rather than formulas, or that stay unverified, kept in
//! one place so the firmware's drivers (`board/mpc8349`) and the board emulator's models
//! (`tests/emulator`) use the very same values (docs/REGISTERS.md, "Shared fact tables").
//!
//! Data only: no register access, no `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

pub mod ipic;
pub mod unverified;
