//! DynamoDB numbers in DAX's forms: CBOR integers, bignums (tags 2 and 3) and decimal fractions
//! (tag 4) inside attribute values, and LexDecimal, the byte-sortable form of a numeric sort key.
//!
//! Everything goes through [`Decimal`] (`crate::wire::number`, shared with the keys of the
//! HTTP front-end), an exact sign, digits and exponent; nothing is ever a float.

use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};

use super::DaxError;
pub(super) use crate::wire::number::Decimal;
use crate::wire::number::{MAX_DIGITS, MAX_EXPONENT, NumberError};

/// Widest number text the proxy writes. DynamoDB's range is 1E-130 to under 1E+126 with 38
/// significant digits, whose longest plain text is `-0.` and 129 zeros before 38 digits (170
/// characters); the bound keeps a hostile exponent from costing memory.
const MAX_TEXT: usize = 200;

const TAG_POSITIVE_BIGNUM: u64 = 2;
const TAG_NEGATIVE_BIGNUM: u64 = 3;
const TAG_DECIMAL: u64 = 4;

impl Decimal {
    /// The number if DynamoDB stores it: at most 38 significant digits, and a magnitude from
    /// 1E-130 to under 1E+126. DynamoDB's own words otherwise.
    pub(super) fn checked(self) -> Result<Decimal, DaxError> {
        match self.check() {
            Ok(()) => Ok(self),
            Err(NumberError::TooPrecise) => Err(DaxError::validation(
                "Attempting to store more than 38 significant digits in a Number",
            )),
            Err(NumberError::Overflow) => Err(overflow()),
            Err(NumberError::Underflow) => Err(DaxError::validation(
                "Number underflow. Attempting to store a number with magnitude smaller than \
                 supported range",
            )),
        }
    }

    /// DynamoDB's normal form: an integer keeps every digit (exponent 0), a fraction loses its
    /// trailing zeros.
    fn normal(&self) -> Decimal {
        let mut n = self.clone();
        if n.is_zero() {
            n.exponent = 0;
        } else if n.exponent >= 0 {
            n.digits
                .extend(std::iter::repeat_n(b'0', n.exponent as usize));
            n.exponent = 0;
        } else {
            while n.exponent < 0 && n.digits.last() == Some(&b'0') {
                n.digits.pop();
                n.exponent += 1;
            }
        }
        n
    }

    /// An integer of more than 38 digits (1E+38 and up) without its trailing zeros. Clients
    /// read numbers in a 38-digit context that refuses to round (Python's `decimal.Rounded`),
    /// so every digit they are given must be significant; DynamoDB keeps at most 38.
    fn within_precision(mut self) -> Decimal {
        if self.digits.len() > MAX_DIGITS {
            while self.digits.last() == Some(&b'0') {
                self.digits.pop();
                self.exponent += 1;
            }
        }
        self
    }

    /// The number as DynamoDB's text, in plain notation.
    pub(super) fn to_text(&self) -> Result<String, DaxError> {
        if self.is_zero() {
            return Ok("0".into());
        }
        // Digits, plus the zeros before them (a fraction) or after them (an integer).
        let digits = self.digits.len() as i64;
        let width = if self.exponent < 0 {
            digits.max(-self.exponent) + 2
        } else {
            digits + self.exponent
        };
        if width > MAX_TEXT as i64 {
            return Err(overflow());
        }
        let n = self.normal();
        let digits = std::str::from_utf8(&n.digits).expect("ascii digits");
        let mut text = String::with_capacity(width as usize + 3);
        if n.negative {
            text.push('-');
        }
        if n.exponent >= 0 {
            text.push_str(digits);
        } else {
            let point = digits.len() as i64 + n.exponent;
            if point <= 0 {
                text.push_str("0.");
                text.extend(std::iter::repeat_n('0', (-point) as usize));
                text.push_str(digits);
            } else {
                text.push_str(&digits[..point as usize]);
                text.push('.');
                text.push_str(&digits[point as usize..]);
            }
        }
        Ok(text)
    }

    /// Reads a number attribute value: an integer, a bignum or a decimal fraction.
    pub(super) fn decode(d: &mut Decoder<'_>) -> Result<Decimal, DaxError> {
        match d.datatype()? {
            Type::Tag => {
                let tag = d.tag()?.as_u64();
                match tag {
                    TAG_POSITIVE_BIGNUM | TAG_NEGATIVE_BIGNUM => {
                        bignum(d.bytes()?, tag == TAG_NEGATIVE_BIGNUM)?.checked()
                    }
                    TAG_DECIMAL => {
                        if d.array()? != Some(2) {
                            return Err(DaxError::malformed("a decimal is [exponent, mantissa]"));
                        }
                        let exponent = i64::try_from(i128::from(d.int()?))
                            .ok()
                            .filter(|e| e.unsigned_abs() <= MAX_EXPONENT)
                            .ok_or_else(overflow)?;
                        // The mantissa is an integer or a bignum, never another decimal: read
                        // it as such, so no input makes this call itself.
                        let mantissa = match d.datatype()? {
                            Type::Tag => match d.tag()?.as_u64() {
                                tag @ (TAG_POSITIVE_BIGNUM | TAG_NEGATIVE_BIGNUM) => {
                                    bignum(d.bytes()?, tag == TAG_NEGATIVE_BIGNUM)?
                                }
                                _ => {
                                    return Err(DaxError::malformed(
                                        "a decimal's mantissa is an integer",
                                    ));
                                }
                            },
                            t if is_integer(t) => integer(d)?,
                            _ => {
                                return Err(DaxError::malformed(
                                    "a decimal's mantissa is an integer",
                                ));
                            }
                        };
                        Decimal {
                            exponent,
                            ..mantissa
                        }
                        .checked()
                    }
                    _ => Err(DaxError::malformed("a number has an unknown tag")),
                }
            }
            // The JavaScript client writes a fraction as a float64 when the float's shortest
            // text is exactly the number's text; that shortest text is the number.
            Type::F64 => float_text(d.f64()?)?.checked(),
            Type::F32 => float_text(d.f32()?)?.checked(),
            t if is_integer(t) => integer(d),
            _ => Err(DaxError::malformed("expected a number")),
        }
    }

    /// Writes the number as an attribute value: an integer when it is one (a bignum past 64
    /// bits), otherwise a decimal fraction without trailing zeros. Never a float.
    pub(super) fn encode(&self, e: &mut Encoder<&mut Vec<u8>>) -> Result<(), DaxError> {
        let n = self.normal();
        if n.exponent < 0 {
            e.tag(Tag::new(TAG_DECIMAL))?.array(2)?.i64(n.exponent)?;
            let mantissa = Decimal {
                exponent: 0,
                ..n.clone()
            };
            return mantissa.encode(e);
        }
        let magnitude = digits_to_be_bytes(&n.digits);
        let value = magnitude
            .iter()
            .try_fold(0u128, |acc, b| {
                acc.checked_mul(256)?.checked_add(*b as u128)
            })
            .filter(|m| *m <= u64::MAX as u128 + n.negative as u128);
        match value {
            Some(m) if !n.negative => {
                e.u64(m as u64)?;
            }
            Some(m) => {
                let int = minicbor::data::Int::try_from(-(m as i128)).expect("within -2^64");
                e.int(int)?;
            }
            None if !n.negative => {
                e.tag(Tag::new(TAG_POSITIVE_BIGNUM))?.bytes(&magnitude)?;
            }
            None => {
                // Tag 3 holds -1 - n.
                e.tag(Tag::new(TAG_NEGATIVE_BIGNUM))?
                    .bytes(&minus_one(magnitude))?;
            }
        }
        Ok(())
    }

    /// Reads LexDecimal, the byte-sortable form DAX clients give a numeric sort key.
    pub(super) fn from_lex(bytes: &[u8]) -> Result<Decimal, DaxError> {
        let bad = || DaxError::malformed("a numeric sort key is not LexDecimal");
        let (&header, mut rest) = bytes.split_first().ok_or_else(bad)?;
        let (negative, exponent) = match header {
            0x00 | 0xFF => return Err(bad()),
            0x7F | 0x80 => return Ok(Decimal::new(false, Vec::new(), 0)),
            0x01 | 0x7E | 0x81 | 0xFE => {
                let raw: [u8; 4] = rest.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes");
                rest = &rest[4..];
                let negative = header < 0x80;
                let mask = if negative { 0x7FFF_FFFF } else { 0x8000_0000 };
                (negative, (u32::from_be_bytes(raw) ^ mask) as i32 as i64)
            }
            h if h >= 0x82 => (false, h as i64 - 0xC0),
            h => (true, 0x3F - h as i64),
        };
        let mut digits = Vec::new();
        let (mut accumulator, mut bits) = (0u32, 0u32);
        let mut last: Option<u32> = None;
        loop {
            let (&byte, tail) = rest.split_first().ok_or_else(bad)?;
            rest = tail;
            accumulator = (accumulator << 8) | byte as u32;
            bits += 8;
            if bits < 10 {
                continue;
            }
            let code = (accumulator >> (bits - 10)) & 0x3FF;
            bits -= 10;
            accumulator &= (1 << bits) - 1;
            let terminator = if negative { 1023 - code } else { code };
            if terminator <= 2 {
                let group = last.ok_or_else(bad)?;
                let text = format!("{group:03}");
                digits.extend_from_slice(&text.as_bytes()[..terminator as usize + 1]);
                break;
            }
            if let Some(group) = last {
                digits.extend_from_slice(format!("{group:03}").as_bytes());
            }
            let group = if negative {
                1011 - code as i64
            } else {
                code as i64 - 12
            };
            if !(0..=999).contains(&group) || digits.len() > 3 * MAX_DIGITS {
                return Err(bad());
            }
            last = Some(group as u32);
        }
        let precision = digits.len() as i64;
        Decimal::new(negative, digits, exponent - precision).checked()
    }

    /// Writes LexDecimal, in DynamoDB's normal form so the client prints what DynamoDB would.
    pub(crate) fn to_lex(&self) -> Vec<u8> {
        if self.is_zero() {
            return vec![0x80];
        }
        let n = self.normal().within_precision();
        let precision = n.digits.len() as i64;
        let e = precision + n.exponent;
        let mut out = Vec::with_capacity(8 + precision as usize * 10 / 24);
        if (-62..62).contains(&e) {
            out.push(if n.negative {
                (0x3F - e) as u8
            } else {
                (0xC0 + e) as u8
            });
        } else {
            let word = if n.negative {
                out.push(if e < 0 { 0x7E } else { 0x01 });
                (e as u32) ^ 0x7FFF_FFFF
            } else {
                out.push(if e < 0 { 0x81 } else { 0xFE });
                (e as u32) ^ 0x8000_0000
            };
            out.extend_from_slice(&word.to_be_bytes());
        }
        let mut codes: Vec<u32> = n
            .digits
            .chunks(3)
            .map(|chunk| {
                let mut group = 0u32;
                for i in 0..3 {
                    group = group * 10 + chunk.get(i).map_or(0, |d| (d - b'0') as u32);
                }
                if n.negative { 1011 - group } else { group + 12 }
            })
            .collect();
        let terminator = (n.digits.len() as u32 - 1) % 3;
        codes.push(if n.negative {
            1023 - terminator
        } else {
            terminator
        });
        let (mut accumulator, mut bits) = (0u32, 0u32);
        for code in codes {
            accumulator = (accumulator << 10) | code;
            bits += 10;
            while bits >= 8 {
                bits -= 8;
                out.push((accumulator >> bits) as u8);
            }
            accumulator &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push((accumulator << (8 - bits)) as u8);
        }
        out
    }
}

/// A CBOR integer, at most 20 digits.
fn integer(d: &mut Decoder<'_>) -> Result<Decimal, DaxError> {
    let n = i128::from(d.int()?);
    Ok(Decimal::new(
        n < 0,
        n.unsigned_abs().to_string().into_bytes(),
        0,
    ))
}

fn overflow() -> DaxError {
    DaxError::validation(
        "Number overflow. Attempting to store a number with magnitude larger than supported range",
    )
}

/// Whether a CBOR item of this type is an integer.
pub(super) fn is_integer(t: Type) -> bool {
    matches!(
        t,
        Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int
    )
}

/// A float's shortest round-trip text, as a decimal.
fn float_text<F: std::fmt::LowerExp + Into<f64> + Copy>(f: F) -> Result<Decimal, DaxError> {
    if !f.into().is_finite() {
        return Err(DaxError::validation(
            "NaN and Infinity are not numbers DynamoDB stores",
        ));
    }
    Decimal::parse(&format!("{f:e}")).ok_or_else(|| DaxError::malformed("an unreadable float"))
}

/// A bignum's big-endian magnitude as a decimal (tag 3 holds -1 - n).
fn bignum(bytes: &[u8], negative: bool) -> Result<Decimal, DaxError> {
    if bytes.len() > 64 {
        return Err(DaxError::validation("Number overflow"));
    }
    // Base 10^9 limbs, least significant first.
    let mut limbs: Vec<u32> = Vec::new();
    for &byte in bytes {
        let mut carry = byte as u64;
        for limb in limbs.iter_mut() {
            let v = *limb as u64 * 256 + carry;
            *limb = (v % 1_000_000_000) as u32;
            carry = v / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push((carry % 1_000_000_000) as u32);
            carry /= 1_000_000_000;
        }
    }
    if negative {
        // -1 - n: add one to the magnitude.
        let mut carry = 1u64;
        for limb in limbs.iter_mut() {
            let v = *limb as u64 + carry;
            *limb = (v % 1_000_000_000) as u32;
            carry = v / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let mut text = String::new();
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            text.push_str(&limb.to_string());
        } else {
            text.push_str(&format!("{limb:09}"));
        }
    }
    Ok(Decimal::new(negative, text.into_bytes(), 0))
}

/// Decimal digits as a big-endian unsigned magnitude.
fn digits_to_be_bytes(digits: &[u8]) -> Vec<u8> {
    // Base 256 limbs, least significant first.
    let mut limbs: Vec<u8> = Vec::new();
    for &d in digits {
        let mut carry = (d - b'0') as u32;
        for limb in limbs.iter_mut() {
            let v = *limb as u32 * 10 + carry;
            *limb = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            limbs.push(carry as u8);
            carry >>= 8;
        }
    }
    limbs.reverse();
    limbs
}

/// A big-endian magnitude less one (for a positive magnitude).
fn minus_one(mut magnitude: Vec<u8>) -> Vec<u8> {
    for byte in magnitude.iter_mut().rev() {
        if *byte > 0 {
            *byte -= 1;
            break;
        }
        *byte = 0xFF;
    }
    let start = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    magnitude[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: &str) -> String {
        Decimal::parse(n).unwrap().to_text().unwrap()
    }

    fn cbor_round_trip(n: &str) -> (Vec<u8>, String) {
        let mut out = Vec::new();
        Decimal::parse(n)
            .unwrap()
            .encode(&mut Encoder::new(&mut out))
            .unwrap();
        let back = Decimal::decode(&mut Decoder::new(&out)).unwrap();
        (out, back.to_text().unwrap())
    }

    #[test]
    fn number_text_is_plain_and_exact() {
        assert_eq!(text("1E+2"), "100");
        assert_eq!(text("100.0"), "100");
        assert_eq!(text("-0.0012e-3"), "-0.0000012");
        assert_eq!(text("007.50"), "7.5");
        assert_eq!(text("-0"), "0");
        assert!(Decimal::parse("1e").is_none());
        assert!(Decimal::parse("abc").is_none());
        assert!(Decimal::parse(".").is_none());
    }

    #[test]
    fn integers_are_cbor_integers_and_fractions_are_decimals() {
        assert_eq!(cbor_round_trip("100"), (vec![0x18, 100], "100".into()));
        assert_eq!(cbor_round_trip("-1"), (vec![0x20], "-1".into()));
        // 1.5 = [-1, 15]
        assert_eq!(
            cbor_round_trip("1.50"),
            (vec![0xC4, 0x82, 0x20, 0x0F], "1.5".into())
        );
        let max = "18446744073709551615";
        assert_eq!(cbor_round_trip(max).0[0], 0x1B);
        assert_eq!(cbor_round_trip("-18446744073709551616").0[0], 0x3B);
    }

    #[test]
    fn floats_from_the_javascript_client_are_their_shortest_text() {
        let float = |f: f64| {
            let mut out = vec![0xFB];
            out.extend_from_slice(&f.to_be_bytes());
            Decimal::decode(&mut Decoder::new(&out)).map(|d| d.to_text().unwrap())
        };
        assert_eq!(float(-2.5).unwrap(), "-2.5");
        assert_eq!(float(-9876543.125).unwrap(), "-9876543.125");
        assert_eq!(float(123456789012.5).unwrap(), "123456789012.5");
        assert_eq!(float(0.1).unwrap(), "0.1");
        assert_eq!(float(1e-7).unwrap(), "0.0000001");
        assert!(float(f64::NAN).is_err());
        assert!(float(f64::INFINITY).is_err());
    }

    #[test]
    fn thirty_eight_digits_survive_as_bignums() {
        for n in [
            "12345678901234567890123456789012345678",
            "-12345678901234567890123456789012345678",
            "1234567890123456789012345678.9012345678",
            "-0.00000000000000000000000000000000000000000000000000000000000000000000000000001",
            "18446744073709551616",
            "-18446744073709551617",
        ] {
            assert_eq!(cbor_round_trip(n).1, n, "{n}");
        }
        assert_eq!(cbor_round_trip("18446744073709551616").0[0], 0xC2);
        assert_eq!(cbor_round_trip("-18446744073709551617").0[0], 0xC3);
    }

    #[test]
    fn lex_decimal_round_trips_and_sorts() {
        let values = [
            "-1E+100",
            "-1000",
            "-999.5",
            "-1",
            "-0.001",
            "0",
            "0.001",
            "0.5",
            "1",
            "7",
            "100",
            "999",
            "1000",
            "123456.789",
            "12345678901234567890123456789012345678",
            "1E+70",
        ];
        let mut encoded = Vec::new();
        for v in values {
            let lex = Decimal::parse(v).unwrap().to_lex();
            let back = Decimal::from_lex(&lex).unwrap();
            assert_eq!(back.to_text().unwrap(), text(v), "{v}");
            encoded.push(lex);
        }
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(sorted, encoded, "byte order is numeric order");
    }

    #[test]
    fn lex_decimal_reads_what_the_client_writes() {
        // The client encodes the text as given: 1E+2 has one digit, 100 has three.
        // 100 (p=3, E=3): header C3, group 100+12=112, terminator 2.
        assert_eq!(
            Decimal::parse("100").unwrap().to_lex(),
            vec![0xC3, 0x1C, 0x00, 0x20]
        );
        // 1E+2 (p=1, E=3): group 100+12, terminator 0.
        let one_e2 = [0xC3, 0x1C, 0x00, 0x00];
        assert_eq!(
            Decimal::from_lex(&one_e2).unwrap().to_text().unwrap(),
            "100"
        );
        assert!(Decimal::from_lex(&[0xC3]).is_err());
        assert!(Decimal::from_lex(&[0x00]).is_err());
    }

    #[test]
    fn nested_decimals_are_refused_without_recursing() {
        // 10,000 tag-4 headers, each claiming another decimal as its mantissa: no client
        // writes this, and reading it must neither recurse nor succeed.
        let mut nested = Vec::new();
        for _ in 0..10_000 {
            nested.extend_from_slice(&[0xC4, 0x82, 0x00]);
        }
        nested.push(0x01);
        assert!(Decimal::decode(&mut Decoder::new(&nested)).is_err());
    }

    #[test]
    fn every_number_dynamodb_accepts_is_read() {
        // 38 digits at the smallest magnitude: [-167, 10000000000000000000000000000000000001].
        let n = Decimal::parse("1.0000000000000000000000000000000000001E-130").unwrap();
        let mut out = Vec::new();
        n.encode(&mut Encoder::new(&mut out)).unwrap();
        let back = Decimal::decode(&mut Decoder::new(&out)).unwrap();
        assert_eq!(back.to_text().unwrap(), n.to_text().unwrap());
        assert!(
            back.to_text()
                .unwrap()
                .ends_with("10000000000000000000000000000000000001")
        );
        for ok in [
            "1E-130",
            "9.9999999999999999999999999999999999999E+125",
            "-1E+125",
        ] {
            assert!(Decimal::parse(ok).unwrap().checked().is_ok(), "{ok}");
        }
        for refused in [
            "1E+126",
            "1E-131",
            "1.00000000000000000000000000000000000001",
        ] {
            assert!(
                Decimal::parse(refused).unwrap().checked().is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn sort_keys_past_38_digits_keep_only_significant_ones() {
        // 1E+38 has 39 digits in plain form; a client reading it in a 38-digit context that
        // refuses to round must be given "1" and the exponent.
        for v in [
            "1E+38",
            "-1E+38",
            "9.9E+125",
            "12345678901234567890123456789012345678E+50",
        ] {
            let lex = Decimal::parse(v).unwrap().to_lex();
            let back = Decimal::from_lex(&lex).unwrap();
            assert!(
                back.digits.len() <= MAX_DIGITS,
                "{v}: {} digits",
                back.digits.len()
            );
            assert_eq!(back.to_text().unwrap(), text(v), "{v}");
        }
        // 1E+38 is one group (100), terminator 0, exponent 39: C0 + 39.
        assert_eq!(
            Decimal::parse("1E+38").unwrap().to_lex(),
            vec![0xE7, 0x1C, 0x00, 0x00]
        );
    }
}
