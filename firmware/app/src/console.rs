//! The serial console: plain text for people on a cable (banner, faults, panics). It takes no lock,
//! so a fault or panic can always print, even from inside another print.

use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use mpc8349::duart::Uart;

/// Base address of the console UART once it is initialised; 0 before.
static UART_BASE: AtomicUsize = AtomicUsize::new(0);

pub fn set(immr: &mpc8349::Immr) {
    UART_BASE.store(immr.base() + 0x4500, Ordering::Relaxed);
}

pub fn print(args: core::fmt::Arguments<'_>) {
    let base = UART_BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: `base` was derived in `set` from the board's IMMR, which bring-up mapped; the UART
    // driver keeps no state, so concurrent instances cannot disagree.
    let mut uart = unsafe { Uart::new(base) };
    let _ = uart.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    () => {
        $crate::console::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
