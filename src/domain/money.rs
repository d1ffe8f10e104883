//! Money: an amount in minor units and the currencies we support.
//!
//! Amounts are integers of the currency's minor unit (kobo, pesewas, cents),
//! as Paystack and every serious payments API use them: no floating point
//! ever touches money. An `Amount` carries no currency of its own; a payment
//! holds both, and the state machine compares both.

use std::fmt;
use std::str::FromStr;

use super::DomainError;

/// A strictly positive amount in minor units of some currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    /// 100 billion major units at exponent 2 (10^13 minor units).
    ///
    /// Far above any real single payment, so it rejects only typos and
    /// attacks; far below `i64::MAX`, so totals over millions of payments
    /// cannot overflow; and below 2^53, so JavaScript clients read it exactly.
    pub const MAX: i64 = 100_000_000_000 * 100;

    pub fn new(minor_units: i64) -> Result<Amount, DomainError> {
        if minor_units <= 0 {
            return Err(DomainError::InvalidAmount(format!(
                "amount must be a positive integer in minor units, got {minor_units}"
            )));
        }
        if minor_units > Self::MAX {
            return Err(DomainError::InvalidAmount(format!(
                "amount must be at most {} minor units, got {minor_units}",
                Self::MAX
            )));
        }
        Ok(Amount(minor_units))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An ISO 4217 currency we can take payments in.
///
/// Variants are spelled as the standard spells the codes, because that is how
/// they appear in every provider payload, log line and support ticket.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Currency {
    NGN,
    GHS,
    ZAR,
    KES,
    USD,
    EUR,
    GBP,
    XOF,
}

impl Currency {
    pub const ALL: [Currency; 8] = [
        Currency::NGN,
        Currency::GHS,
        Currency::ZAR,
        Currency::KES,
        Currency::USD,
        Currency::EUR,
        Currency::GBP,
        Currency::XOF,
    ];

    /// Parses an ISO 4217 code. Only the canonical uppercase form is accepted:
    /// a client sending "ngn" has a bug we would rather surface than guess at.
    pub fn parse(code: &str) -> Result<Currency, DomainError> {
        let well_formed = code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase());
        if !well_formed {
            return Err(DomainError::InvalidCurrency(format!(
                "currency must be a three-letter uppercase ISO 4217 code such as NGN, got {code:?}"
            )));
        }
        Self::ALL
            .into_iter()
            .find(|currency| currency.as_str() == code)
            .ok_or_else(|| {
                let supported: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
                DomainError::InvalidCurrency(format!(
                    "currency {code} is not supported; supported currencies are {}",
                    supported.join(", ")
                ))
            })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Currency::NGN => "NGN",
            Currency::GHS => "GHS",
            Currency::ZAR => "ZAR",
            Currency::KES => "KES",
            Currency::USD => "USD",
            Currency::EUR => "EUR",
            Currency::GBP => "GBP",
            Currency::XOF => "XOF",
        }
    }

    /// How many decimal places the minor unit has (ISO 4217): 100 kobo make a
    /// naira, but the CFA franc has no subunit, so 1 XOF is 1 minor unit.
    pub fn minor_unit_exponent(&self) -> u32 {
        match self {
            Currency::NGN
            | Currency::GHS
            | Currency::ZAR
            | Currency::KES
            | Currency::USD
            | Currency::EUR
            | Currency::GBP => 2,
            Currency::XOF => 0,
        }
    }
}

impl FromStr for Currency {
    type Err = DomainError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::parse(code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_amounts_are_rejected() {
        for minor_units in [0, -1, i64::MIN] {
            let err = Amount::new(minor_units).unwrap_err();
            assert_eq!(err.field(), "amount");
        }
    }

    #[test]
    fn smallest_and_largest_amounts_are_accepted() {
        assert_eq!(Amount::new(1).unwrap().get(), 1);
        assert_eq!(Amount::new(Amount::MAX).unwrap().get(), Amount::MAX);
    }

    #[test]
    fn amounts_above_max_are_rejected() {
        assert!(Amount::new(Amount::MAX + 1).is_err());
        assert!(Amount::new(i64::MAX).is_err());
    }

    #[test]
    fn max_is_one_hundred_billion_major_units() {
        assert_eq!(Amount::MAX, 10_000_000_000_000);
    }

    #[test]
    fn amount_displays_as_the_integer() {
        assert_eq!(Amount::new(50_000).unwrap().to_string(), "50000");
    }

    #[test]
    fn every_currency_round_trips() {
        for currency in Currency::ALL {
            assert_eq!(Currency::parse(currency.as_str()), Ok(currency));
            assert_eq!(currency.as_str().parse::<Currency>(), Ok(currency));
            assert_eq!(currency.to_string(), currency.as_str());
        }
    }

    #[test]
    fn lowercase_code_is_rejected() {
        let err = Currency::parse("ngn").unwrap_err();
        assert_eq!(err.field(), "currency");
    }

    #[test]
    fn malformed_codes_are_rejected() {
        for code in ["", "NG", "NGNN", " NGN", "NGN ", "N1N", "ÑGN"] {
            assert!(Currency::parse(code).is_err(), "{code:?} was accepted");
        }
    }

    #[test]
    fn unknown_code_names_the_supported_list() {
        let err = Currency::parse("JPY").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("JPY"));
        for currency in Currency::ALL {
            assert!(message.contains(currency.as_str()), "{message}");
        }
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(Currency::NGN.minor_unit_exponent(), 2);
        assert_eq!(Currency::USD.minor_unit_exponent(), 2);
        assert_eq!(Currency::XOF.minor_unit_exponent(), 0);
    }
}
