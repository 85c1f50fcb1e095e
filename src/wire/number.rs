//! DynamoDB numbers, exact: a sign, digits and an exponent, never a float. One reader for the
//! number text every front-end sees, and DynamoDB's own limits: at most 38 significant digits,
//! and a magnitude from 1E-130 to under 1E+126.
//!
//! Keys compare numbers by value through [`Decimal::canonical`] (`1`, `1.0`, `1E0` and `01` are
//! one key); the DAX front-end writes them in its CBOR and LexDecimal forms from the same
//! [`Decimal`].

/// Most significant digits DynamoDB keeps.
pub(crate) const MAX_DIGITS: usize = 38;
/// The largest decimal exponent read before the range is checked: it keeps the arithmetic in
/// range, and is far past anything DynamoDB stores.
pub(crate) const MAX_EXPONENT: u64 = 1 << 20;
/// The smallest and largest power of ten a DynamoDB number's leading digit may have.
pub(crate) const MIN_POWER: i64 = -130;
pub(crate) const MAX_POWER: i64 = 125;

/// An exact decimal: `(-1)^negative × digits × 10^exponent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    pub(crate) negative: bool,
    /// ASCII digits without leading zeros; empty for zero.
    pub(crate) digits: Vec<u8>,
    pub(crate) exponent: i64,
}

/// Why DynamoDB would refuse a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    /// More than 38 significant digits.
    TooPrecise,
    /// A magnitude of 1E+126 or more.
    Overflow,
    /// A magnitude under 1E-130.
    Underflow,
}

impl Decimal {
    /// A decimal of these digits (leading zeros dropped; zero is never negative).
    pub(crate) fn new(negative: bool, digits: Vec<u8>, exponent: i64) -> Decimal {
        let start = digits
            .iter()
            .position(|&d| d != b'0')
            .unwrap_or(digits.len());
        let digits = digits[start..].to_vec();
        let negative = negative && !digits.is_empty();
        Decimal {
            negative,
            digits,
            exponent,
        }
    }

    /// Reads DynamoDB's number text (`-12.5`, `1E+3`, `007`); `None` if it is not a number.
    /// Surrounding whitespace is not trimmed: DynamoDB alone decides what such text means.
    pub(crate) fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
        if !digits.iter().all(u8::is_ascii_digit) || exponent.unsigned_abs() > MAX_EXPONENT {
            return None;
        }
        Some(Decimal::new(
            negative,
            digits,
            exponent - fraction.len() as i64,
        ))
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The digits without their trailing zeros.
    fn significant(&self) -> &[u8] {
        let zeros = self.digits.iter().rev().take_while(|&&d| d == b'0').count();
        &self.digits[..self.digits.len() - zeros]
    }

    /// Whether DynamoDB stores this number, and if not, why.
    pub(crate) fn check(&self) -> Result<(), NumberError> {
        if self.is_zero() {
            return Ok(());
        }
        if self.significant().len() > MAX_DIGITS {
            return Err(NumberError::TooPrecise);
        }
        let power = self.digits.len() as i64 - 1 + self.exponent;
        if power > MAX_POWER {
            return Err(NumberError::Overflow);
        }
        if power < MIN_POWER {
            return Err(NumberError::Underflow);
        }
        Ok(())
    }

    /// A form where equal numbers are equal strings: `0`, or `[-]DIGITS e EXPONENT` with the
    /// digits significant (no leading or trailing zeros) and the value `0.DIGITS × 10^EXPONENT`.
    pub(crate) fn canonical(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let significant = std::str::from_utf8(self.significant()).expect("ASCII digits");
        let exponent = self.digits.len() as i64 + self.exponent;
        format!(
            "{}{significant}e{exponent}",
            if self.negative { "-" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodbs_limits() {
        let check = |text: &str| Decimal::parse(text).unwrap().check();
        assert_eq!(check("0"), Ok(()));
        assert_eq!(check("1E-130"), Ok(()));
        assert_eq!(check("9.9E125"), Ok(()));
        assert_eq!(check("1E126"), Err(NumberError::Overflow));
        assert_eq!(check("1E-131"), Err(NumberError::Underflow));
        assert_eq!(check(&"1".repeat(38)), Ok(()));
        assert_eq!(check(&"1".repeat(39)), Err(NumberError::TooPrecise));
        // Trailing zeros of an integer are not significant.
        assert_eq!(check(&format!("1{}", "0".repeat(60))), Ok(()));
    }

    #[test]
    fn equal_numbers_have_one_canonical_form() {
        let canonical = |text: &str| Decimal::parse(text).unwrap().canonical();
        for same in ["1", "1.0", "1E0", "01", "0.1e1", "+1", "10e-1"] {
            assert_eq!(canonical(same), "1e1", "{same}");
        }
        assert_eq!(canonical("-0.0"), "0");
        assert_eq!(canonical("-12.50"), "-125e2");
        for not in ["", "-", ".", "1e", "e5", "1.2.3", " 1", "0x10", "1e9999999"] {
            assert_eq!(Decimal::parse(not), None, "{not:?}");
        }
    }
}
