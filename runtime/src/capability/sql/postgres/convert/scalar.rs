//! Exact text forms of the binary scalars without a lossless Rust type:
//! `numeric` (every digit), `interval` (ISO 8601) and `uuid`.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::BoxError;

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

fn read_u16(raw: &[u8], at: usize) -> Result<u16, BoxError> {
    raw.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated numeric".into())
}

/// The exact decimal text of a binary `numeric`.
pub(super) fn numeric_to_string(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = usize::from(read_u16(raw, 0)?);
    let weight = i64::from(read_u16(raw, 2)? as i16);
    let sign = read_u16(raw, 4)?;
    let dscale = usize::from(read_u16(raw, 6)?);
    let digits = (0..ndigits)
        .map(|i| read_u16(raw, 8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        _ => {}
    }
    let digit = |k: i64| -> u16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == NUMERIC_NEG {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                let _ = write!(text, "{}", digit(k));
            } else {
                let _ = write!(text, "{:04}", digit(k));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let groups = dscale.div_ceil(4) as i64;
        for j in 1..=groups {
            let _ = write!(fraction, "{:04}", digit(weight + j));
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// Binary `numeric` from decimal text (`-12.340`, `1.5e3`: every digit kept).
pub(super) fn numeric_from_str(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let bad = || -> BoxError { format!("`{text}` is not a decimal number").into() };
    let trimmed = text.trim();
    let (sign, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (NUMERIC_NEG, rest),
        None => (0, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    match body {
        "NaN" => return write_numeric(out, 0, 0, NUMERIC_NAN, 0, &[]),
        "Infinity" | "inf" => {
            let sign = if sign == NUMERIC_NEG {
                NUMERIC_NINF
            } else {
                NUMERIC_PINF
            };
            return write_numeric(out, 0, 0, sign, 0, &[]);
        }
        _ => {}
    }
    let plain = plain_decimal(body).ok_or_else(bad)?;
    let (int_part, frac_part) = plain.split_once('.').unwrap_or((&plain, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let int_part = int_part.trim_start_matches('0');
    let dscale = u16::try_from(frac_part.len()).map_err(|_| bad())?;
    // Pad so both parts split into whole base-10000 groups around the point.
    let int_padded = format!("{}{int_part}", "0".repeat((4 - int_part.len() % 4) % 4));
    let frac_padded = format!("{frac_part}{}", "0".repeat((4 - frac_part.len() % 4) % 4));
    let group = |s: &str| -> Vec<u16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')))
            .collect()
    };
    let int_groups = group(&int_padded);
    let mut all: Vec<u16> = int_groups
        .iter()
        .copied()
        .chain(group(&frac_padded))
        .collect();
    let mut weight = int_groups.len() as i64 - 1;
    // Strip leading zero groups (adjusting the weight) and trailing zero groups.
    while all.first() == Some(&0) {
        all.remove(0);
        weight -= 1;
    }
    while all.last() == Some(&0) {
        all.pop();
    }
    if all.is_empty() {
        return write_numeric(out, 0, 0, 0, dscale, &[]);
    }
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    write_numeric(out, all.len(), weight, sign, dscale, &all)
}

/// The exponent a decimal may carry (`numeric` holds up to 131072 digits
/// before the point and 16383 after).
const MAX_EXPONENT: i64 = 140_000;

/// `1.25e3` → `1250`, `15e-3` → `0.015`; text without an exponent as it is.
/// Digits are moved, never computed, so none is lost.
fn plain_decimal(body: &str) -> Option<String> {
    let Some((mantissa, exponent)) = body.split_once(['e', 'E']) else {
        return Some(body.to_string());
    };
    let exponent: i64 = exponent.parse().ok()?;
    if exponent.abs() > MAX_EXPONENT {
        return None;
    }
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int_part}{frac_part}");
    let point = int_part.len() as i64 + exponent;
    Some(if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int_digits, frac_digits) = digits.split_at(point as usize);
        format!("{int_digits}.{frac_digits}")
    })
}

fn write_numeric(
    out: &mut BytesMut,
    ndigits: usize,
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: &[u16],
) -> Result<(), BoxError> {
    out.put_u16(u16::try_from(ndigits)?);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
    for d in digits {
        out.put_u16(*d);
    }
    Ok(())
}

const MICROS_PER_SECOND: i64 = 1_000_000;

/// ISO 8601 duration of a binary `interval` (months, days and microseconds kept apart).
pub(super) fn interval_to_iso(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("bad interval".into());
    }
    let micros = i64::from_be_bytes(raw[0..8].try_into()?);
    let days = i32::from_be_bytes(raw[8..12].try_into()?);
    let months = i32::from_be_bytes(raw[12..16].try_into()?);
    let mut text = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years, 'Y'), (months, 'M'), (days, 'D')] {
        if n != 0 {
            let _ = write!(text, "{n}{unit}");
        }
    }
    if micros != 0 {
        text.push('T');
        let hours = micros / (3600 * MICROS_PER_SECOND);
        let minutes = (micros / (60 * MICROS_PER_SECOND)) % 60;
        let rest = micros % (60 * MICROS_PER_SECOND);
        if hours != 0 {
            let _ = write!(text, "{hours}H");
        }
        if minutes != 0 {
            let _ = write!(text, "{minutes}M");
        }
        if rest != 0 {
            let (secs, frac) = (rest / MICROS_PER_SECOND, (rest % MICROS_PER_SECOND).abs());
            let sign = if rest < 0 && secs == 0 { "-" } else { "" };
            if frac == 0 {
                let _ = write!(text, "{sign}{secs}S");
            } else {
                let frac = format!("{frac:06}");
                let _ = write!(text, "{sign}{secs}.{}S", frac.trim_end_matches('0'));
            }
        }
    }
    if text == "P" {
        text.push_str("T0S");
    }
    Ok(text)
}

/// Parse an ISO 8601 duration (`P1Y2M3DT4H5M6.5S`, components may be negative).
pub(super) fn interval_from_iso(text: &str) -> Result<(i64, i32, i32), BoxError> {
    let bad = || -> BoxError {
        format!("`{text}` is not an ISO 8601 duration like `P1Y2M3DT4H5M6.5S`").into()
    };
    let body = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let mut number = String::new();
    for c in date.chars() {
        match c {
            'Y' | 'M' | 'W' | 'D' => {
                let n: i64 = number.parse().map_err(|_| bad())?;
                number.clear();
                match c {
                    'Y' => months += n * 12,
                    'M' => months += n,
                    'W' => days += n * 7,
                    _ => days += n,
                }
            }
            _ => number.push(c),
        }
    }
    if !number.is_empty() {
        return Err(bad());
    }
    for c in time.chars() {
        match c {
            'H' | 'M' | 'S' => {
                let n: f64 = number.parse().map_err(|_| bad())?;
                number.clear();
                let unit = match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                micros += (n * unit * MICROS_PER_SECOND as f64).round() as i64;
            }
            _ => number.push(c),
        }
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok((
        micros,
        i32::try_from(days).map_err(|_| bad())?,
        i32::try_from(months).map_err(|_| bad())?,
    ))
}

/// A binary uuid as `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`.
pub(super) fn uuid_text(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("bad uuid".into());
    }
    let mut text = String::with_capacity(36);
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        write!(text, "{byte:02x}")?;
    }
    Ok(text)
}

/// The 16 bytes of a uuid written as 32 hex digits, hyphenated or not,
/// optionally in braces (the forms PostgreSQL accepts).
pub(super) fn uuid_bytes(text: &str) -> Result<[u8; 16], BoxError> {
    let bad = || -> BoxError { format!("`{text}` is not a uuid").into() };
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let digits: Vec<u8> = inner.bytes().filter(|&b| b != b'-').collect();
    if digits.len() != 32 || inner.starts_with('-') || inner.ends_with('-') {
        return Err(bad());
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        bytes[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(text: &str) -> String {
        let mut buf = BytesMut::new();
        numeric_from_str(text, &mut buf).unwrap();
        numeric_to_string(&buf).unwrap()
    }

    #[test]
    fn numerics_round_trip_exactly() {
        for text in [
            "0",
            "1",
            "-1",
            "12345.6789",
            "0.0001",
            "-0.5",
            "100000000",
            "3.14159265358979323846",
            "10.500",
            "0.000",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(numeric_round_trip(text), text, "{text}");
        }
        assert_eq!(numeric_round_trip("007.50"), "7.50");
        assert_eq!(numeric_round_trip("1e3"), "1000");
        assert_eq!(numeric_round_trip("1.25E+3"), "1250");
        assert_eq!(numeric_round_trip("15e-3"), "0.015");
        assert_eq!(numeric_round_trip("-1.5e-1"), "-0.15");
        assert_eq!(
            numeric_round_trip("0.12345678901234567890"),
            "0.12345678901234567890"
        );
        assert!(numeric_from_str("1e", &mut BytesMut::new()).is_err());
        assert!(numeric_from_str("1e999999", &mut BytesMut::new()).is_err());
        assert!(numeric_from_str("12abc", &mut BytesMut::new()).is_err());
    }

    #[test]
    fn uuids_round_trip_in_every_accepted_form() {
        let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for form in [
            text,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        ] {
            assert_eq!(
                uuid_text(&uuid_bytes(form).unwrap()).unwrap(),
                text,
                "{form}"
            );
        }
        for bad in [
            "",
            "a0eebc99",
            "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "g0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert!(uuid_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_round_trip_through_iso_8601() {
        for text in [
            "P1Y2M3DT4H5M6.5S",
            "PT0S",
            "P-3D",
            "PT-0.25S",
            "P14M",
            "PT36H",
        ] {
            let (micros, days, months) = interval_from_iso(text).unwrap();
            let mut raw = Vec::new();
            raw.extend(micros.to_be_bytes());
            raw.extend(days.to_be_bytes());
            raw.extend(months.to_be_bytes());
            let expected = if text == "P14M" { "P1Y2M" } else { text };
            assert_eq!(interval_to_iso(&raw).unwrap(), expected, "{text}");
        }
    }
}
