//! Byte counts are `u64` everywhere (files, downloads, archives and
//! `MAX_DOWNLOAD_SIZE` pass 4 GiB on a video box). Only a buffer held in
//! memory needs a `usize`, and on 32-bit Raspberry Pi OS (armhf) `usize` is
//! 32 bits: `as usize` would turn a 5 GiB count into 1 GiB. Every such
//! conversion goes through here and fails instead of wrapping.

/// `bytes` as a length of type `T` (`usize` in the agent; the tests also
/// use `u32`, a 32-bit box's `usize`, so they fail on truncation on any
/// machine), or `None` when it does not fit.
pub fn checked_len<T: TryFrom<u64>>(bytes: u64) -> Option<T> {
    T::try_from(bytes).ok()
}

/// `bytes` as an in-memory length on this machine.
pub fn in_memory(bytes: u64) -> Option<usize> {
    checked_len(bytes)
}

/// A count of MiB in bytes, without overflow on any width.
pub fn mib(mib: u32) -> u64 {
    u64::from(mib) << 20
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_GIB: u64 = 5 << 30;

    #[test]
    fn five_gib_does_not_fit_a_32_bit_length() {
        // `FIVE_GIB as u32` is 1 GiB: the wrap this module exists to refuse.
        assert_eq!(FIVE_GIB as u32, 1 << 30);
        assert_eq!(checked_len::<u32>(FIVE_GIB), None);
        assert_eq!(checked_len::<u32>(u64::from(u32::MAX) + 1), None);
        assert_eq!(checked_len::<u32>(u64::from(u32::MAX)), Some(u32::MAX));
        assert_eq!(checked_len::<u32>(1 << 30), Some(1 << 30));
    }

    #[test]
    fn in_memory_matches_the_machine() {
        let expected = if usize::BITS >= 64 {
            usize::try_from(FIVE_GIB).ok()
        } else {
            None
        };
        assert_eq!(in_memory(FIVE_GIB), expected);
        assert_eq!(in_memory(4096), Some(4096));
    }

    #[test]
    fn mib_counts_past_4_gib() {
        assert_eq!(mib(1024), 1 << 30);
        assert_eq!(mib(5 * 1024), FIVE_GIB);
        assert_eq!(mib(u32::MAX), u64::from(u32::MAX) << 20);
    }
}
