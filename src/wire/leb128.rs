//! LEB128 numbers: seven bits a byte, low first, the top bit set on every byte but the last. A
//! prefix code, so length-prefixed fields read back one way only, and small numbers (most
//! lengths) take one byte. Canonical keys, the cache's compact item form and its entry headers
//! all write their numbers this way.

/// Appends `n`.
pub(crate) fn push(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The number at `*at`, moving `*at` past it; `None` if the bytes end first or it has more than
/// 64 bits.
pub(crate) fn read(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

/// A length at `*at` (a number that fits a `usize`).
pub(crate) fn read_len(bytes: &[u8], at: &mut usize) -> Option<usize> {
    usize::try_from(read(bytes, at)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back_and_truncated_ones_do_not() {
        for n in [
            0,
            1,
            127,
            128,
            255,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            push(&mut out, n);
            let mut at = 0;
            assert_eq!(read(&out, &mut at), Some(n));
            assert_eq!(at, out.len());
            let mut at = 0;
            assert_eq!(read(&out[..out.len() - 1], &mut at), None);
        }
        assert_eq!(read(&[0x80; 11], &mut 0), None);
    }
}
