//! Amounts between payorch and Flutterwave: minor units (`150075`) in
//! payorch, decimal *major* units (`1500.75` NGN) at Flutterwave. Both
//! directions are exact, from integer arithmetic and decimal text, never
//! through floating point.

use serde_json::value::RawValue;

use crate::domain::{Amount, Currency};

/// `amount` in `currency`'s major units as an exact JSON number:
/// 150075 NGN → `1500.75`, 150000 NGN → `1500`, 1500 XOF → `1500`.
pub fn to_major(amount: Amount, currency: Currency) -> Box<RawValue> {
    raw_number(major_text(amount.get(), currency.minor_unit_exponent()))
}

/// Decimal text of major units (`"1500.75"`, no exponent, no sign) as
/// minor units of `currency`, exactly; more decimals than the currency has
/// (unless they are zeros), a sign, an exponent or anything else is refused.
pub fn to_minor(text: &str, currency: Currency) -> Result<i64, String> {
    minor_of(text, currency.minor_unit_exponent())
}

/// Minor units as major-unit decimal text at `exponent`, shortest exact
/// form: `(150075, 2)` → `1500.75`, `(150070, 2)` → `1500.7`, `(-5, 2)` →
/// `-0.05`.
pub(crate) fn major_text(minor: i64, exponent: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let unit = 10u64.pow(exponent);
    let (whole, fraction) = (magnitude / unit, magnitude % unit);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{fraction:0width$}", width = exponent as usize);
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// Decimal text as minor units at `exponent` (see [`to_minor`]).
fn minor_of(text: &str, exponent: u32) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an amount in major units");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(bad());
    }
    let places = exponent as usize;
    let (kept, dropped) = fraction.split_at(fraction.len().min(places));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!(
            "{text:?} has more decimals than the currency's {exponent}"
        ));
    }
    let too_large = || format!("{text:?} is too large");
    let mut minor: i64 = 0;
    for digit in whole.bytes().chain(kept.bytes()) {
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    for _ in kept.len()..places {
        minor = minor.checked_mul(10).ok_or_else(too_large)?;
    }
    Ok(minor)
}

/// An amount as an answer carries it (a number, or a numeric string) in
/// minor units of `currency`.
pub(crate) fn amount_minor(raw: &RawValue, currency: &str) -> Result<i64, String> {
    let currency =
        Currency::parse(currency).map_err(|_| format!("unknown currency {currency:?}"))?;
    let text = raw.get().trim();
    if text.starts_with('"') {
        let inner: String =
            serde_json::from_str(text).map_err(|e| format!("amount {text}: {e}"))?;
        to_minor(&inner, currency)
    } else {
        to_minor(text, currency)
    }
}

fn raw_number(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("decimal digits are a JSON number")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn major(minor: i64, currency: Currency) -> String {
        to_major(Amount::new(minor).unwrap(), currency)
            .get()
            .to_owned()
    }

    #[test]
    fn minor_units_become_exact_major_units() {
        assert_eq!(major(150075, Currency::NGN), "1500.75");
        assert_eq!(major(150070, Currency::NGN), "1500.7");
        assert_eq!(major(150000, Currency::NGN), "1500");
        assert_eq!(major(5, Currency::USD), "0.05");
        assert_eq!(major(1500, Currency::XOF), "1500");
        assert_eq!(major(Amount::MAX, Currency::NGN), "100000000000");
        assert_eq!(major_text(-5, 2), "-0.05");
        assert_eq!(major_text(i64::MIN, 0), i64::MIN.to_string());
    }

    #[test]
    fn major_units_become_exact_minor_units() {
        assert_eq!(to_minor("1500.75", Currency::NGN), Ok(150075));
        assert_eq!(to_minor("1500.7", Currency::NGN), Ok(150070));
        assert_eq!(to_minor("1500", Currency::NGN), Ok(150000));
        assert_eq!(to_minor("1500.750", Currency::NGN), Ok(150075));
        assert_eq!(to_minor("0.05", Currency::USD), Ok(5));
        assert_eq!(to_minor("1500", Currency::XOF), Ok(1500));
        assert_eq!(to_minor("1500.00", Currency::XOF), Ok(1500));
    }

    #[test]
    fn inexact_or_malformed_amounts_are_refused() {
        for (text, currency) in [
            ("1500.755", Currency::NGN),
            ("1500.5", Currency::XOF),
            ("-1", Currency::NGN),
            ("+1", Currency::NGN),
            ("1e3", Currency::NGN),
            ("1E3", Currency::XOF),
            ("", Currency::NGN),
            (".5", Currency::NGN),
            ("5.", Currency::NGN),
            ("1.2.3", Currency::NGN),
            (" 15", Currency::NGN),
            ("0x10", Currency::NGN),
            ("NaN", Currency::NGN),
            ("99999999999999999999", Currency::XOF),
            ("92233720368547758.08", Currency::NGN),
        ] {
            assert!(
                to_minor(text, currency).is_err(),
                "{text:?} {currency} was accepted"
            );
        }
    }

    #[test]
    fn conversions_round_trip() {
        for currency in Currency::ALL {
            for minor in [1, 7, 10, 99, 100, 101, 150075, 999_999, Amount::MAX] {
                let text = major(minor, currency);
                assert_eq!(to_minor(&text, currency), Ok(minor), "{text} {currency}");
            }
        }
    }
}
