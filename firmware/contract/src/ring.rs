//! Ring index arithmetic shared by both sides.
//!
//! Every index is a free-running `u32` that counts entries ever produced or consumed and wraps at
//! 2^32; entry `n` lives in slot `n % entries`. Because the ring size is a power of two that divides
//! 2^32, wrapping never changes the slot, and `prod - cons` (wrapping) is the number of entries in
//! flight as long as it is at most the ring size. A larger difference can only come from a corrupt
//! or hostile index, and [`pending`] refuses it.
//!
//! The two rings, both of [`Entries`] descriptors in agent RAM, completions in host RAM:
//!
//! * TX (host to agent): the host writes a [`crate::bar::Descriptor`] at `slot(tx_prod)`, then
//!   bumps `tx_prod` in [`crate::bar::Doorbells`]. The agent moves the frame, DMAs a
//!   [`crate::status::Completion`] into slot `slot(tx_used)` of the TX completions, then `tx_used`.
//! * RX (agent to host): the host posts an empty buffer the same way with `rx_prod`; the agent DMAs
//!   a frame into it, then the completion (carrying the length) and `rx_used`.
//!
//! Notifications follow virtio's event index: each receiver publishes the index at which it wants
//! to be told, and the sender, having moved its index from `old` to `new`, notifies only when
//! [`need_event`] says the published index lies in between. Under load the receiver is still busy
//! when the sender passes its mark, so notifications per entry fall towards zero.

use crate::Error;

/// A ring size: a power of two within [`Entries::MIN`]..=[`Entries::MAX`], so slot arithmetic is a
/// mask and cannot go out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entries(u32);

impl Entries {
    /// Smallest ring: one entry in flight while another is being refilled.
    pub const MIN: u32 = 2;
    /// Largest ring: 64 KiB of descriptors, which the default layout reserves for each ring.
    pub const MAX: u32 = 4096;

    /// Validate a ring size read from shared memory.
    pub const fn new(entries: u32) -> Result<Self, Error> {
        if entries < Self::MIN || entries > Self::MAX || !entries.is_power_of_two() {
            return Err(Error::BadRingEntries(entries));
        }
        Ok(Entries(entries))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

/// Whether a sender that moved its index from `old` to `new` must notify a receiver that asked to be
/// told once the index passes `event` (virtio's `vring_need_event`, on 32-bit indexes).
pub const fn need_event(event: u32, new: u32, old: u32) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Entries produced but not yet consumed. Refuses a producer more than a ring ahead of the consumer
/// (including one that has gone backwards, which wraps to a huge difference).
pub const fn pending(prod: u32, cons: u32, entries: Entries) -> Result<u32, Error> {
    let n = prod.wrapping_sub(cons);
    if n > entries.0 {
        return Err(Error::BadIndex { prod, cons });
    }
    Ok(n)
}

/// The slot of free-running index `index`: always below `entries`.
pub const fn slot(index: u32, entries: Entries) -> usize {
    (index & (entries.0 - 1)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entries_bounds() {
        for n in [0, 1, 3, 6, 8192, u32::MAX] {
            assert_eq!(Entries::new(n), Err(Error::BadRingEntries(n)));
        }
        for shift in 1..=12 {
            assert_eq!(Entries::new(1 << shift).unwrap().get(), 1 << shift);
        }
    }

    #[test]
    fn need_event_examples() {
        // The receiver asked to hear when index 5 is passed: moving 4 -> 6 crosses it.
        assert!(need_event(5, 6, 4));
        assert!(need_event(5, 6, 5));
        assert!(!need_event(5, 5, 4));
        assert!(!need_event(9, 8, 4));
        // Across the wrap.
        assert!(need_event(u32::MAX, 1, u32::MAX - 1));
        // No movement, no notification.
        assert!(!need_event(3, 3, 3));
    }

    #[test]
    fn pending_refuses_hostile_indexes() {
        let e = Entries::new(8).unwrap();
        assert_eq!(pending(8, 0, e), Ok(8));
        assert_eq!(pending(9, 0, e), Err(Error::BadIndex { prod: 9, cons: 0 }));
        assert_eq!(pending(3, u32::MAX - 2, e), Ok(6));
        // A producer behind its consumer is as wrong as one too far ahead.
        assert_eq!(pending(0, 1, e), Err(Error::BadIndex { prod: 0, cons: 1 }));
    }

    fn entries() -> impl Strategy<Value = Entries> {
        (1u32..=12).prop_map(|s| Entries::new(1 << s).unwrap())
    }

    proptest! {
        /// `need_event` is true exactly when `event` is one of the indexes `old..new` the sender
        /// just stepped over (counted modulo 2^32), whatever the wrap.
        #[test]
        fn need_event_means_event_was_passed(old in any::<u32>(), step in 0u32..1000, back in 0u32..2000) {
            let new = old.wrapping_add(step);
            let event = new.wrapping_sub(back);
            let passed = (0..step).any(|i| old.wrapping_add(i) == event);
            prop_assert_eq!(need_event(event, new, old), passed);
        }

        /// Any index pair within a ring of each other is accepted with the right count; any other
        /// pair is refused.
        #[test]
        fn pending_counts_or_refuses(cons in any::<u32>(), ahead in any::<u32>(), e in entries()) {
            let prod = cons.wrapping_add(ahead);
            match pending(prod, cons, e) {
                Ok(n) => { prop_assert!(ahead <= e.get()); prop_assert_eq!(n, ahead); }
                Err(err) => { prop_assert!(ahead > e.get()); prop_assert_eq!(err, Error::BadIndex { prod, cons }); }
            }
        }

        /// Slots stay in range and consecutive indexes take consecutive slots, across the wrap too.
        #[test]
        fn slot_in_range_and_consecutive(index in any::<u32>(), e in entries()) {
            let s = slot(index, e);
            prop_assert!(s < e.get() as usize);
            prop_assert_eq!(slot(index.wrapping_add(1), e), (s + 1) % e.get() as usize);
            prop_assert_eq!(s, (index % e.get()) as usize);
        }
    }
}
