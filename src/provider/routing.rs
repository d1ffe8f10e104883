//! Which connector opens a payment: `PAYORCH_ROUTING`, per currency, a
//! weighted choice and then fallbacks in order.
//!
//! ```text
//! NGN=paystack:70,flutterwave:30;GHS=flutterwave;*=paystack
//! ```
//!
//! A rule lists connectors; those with a weight share the first attempt by
//! weight, and the rest of the rule follows as fallbacks: the other weighted
//! ones in the order written, then the unweighted ones. A rule with no
//! weights is simply an order. `*` matches every currency without a rule of
//! its own; a currency matched by no rule is offered to the enabled
//! connectors in `PAYORCH_PROVIDERS` order.

use std::{fmt, str::FromStr};

use rand::Rng;

use crate::domain::Currency;

/// A connector payorch has. Adding one means a variant here, its client
/// file and its sandbox dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectorName {
    Paystack,
    Flutterwave,
}

impl ConnectorName {
    pub const ALL: [ConnectorName; 2] = [ConnectorName::Paystack, ConnectorName::Flutterwave];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorName::Paystack => "paystack",
            ConnectorName::Flutterwave => "flutterwave",
        }
    }

    /// The connector a stored name or webhook path means: `sandbox` is the
    /// Paystack dialect (the name payments were stored under before there
    /// was more than one connector).
    pub fn of_stored(name: &str) -> Option<ConnectorName> {
        match name {
            "sandbox" => Some(ConnectorName::Paystack),
            other => other.parse().ok(),
        }
    }
}

impl fmt::Display for ConnectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectorName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ConnectorName::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| format!("`{name}` is not a connector (paystack, flutterwave)"))
    }
}

/// One connector of a rule, with its weight if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    connector: ConnectorName,
    weight: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `None`: `*`.
    currency: Option<Currency>,
    entries: Vec<Entry>,
}

/// The parsed `PAYORCH_ROUTING`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    rules: Vec<Rule>,
}

impl FromStr for Routing {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut rules: Vec<Rule> = Vec::new();
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let (key, list) = rule
                .split_once('=')
                .ok_or_else(|| format!("`{rule}` is not CURRENCY=connector[:weight],…"))?;
            let currency = match key.trim() {
                "*" => None,
                code => Some(Currency::parse(code).map_err(|e| format!("`{code}`: {e}"))?),
            };
            if rules.iter().any(|r| r.currency == currency) {
                return Err(format!("`{}` has two rules", key.trim()));
            }
            let mut entries: Vec<Entry> = Vec::new();
            for item in list.split(',').map(str::trim) {
                let (name, weight) = match item.split_once(':') {
                    Some((name, weight)) => {
                        let weight = weight.trim().parse::<u32>().map_err(|_| {
                            format!("`{item}`: a weight is a whole number from 0 to 4294967295")
                        })?;
                        (name.trim(), Some(weight))
                    }
                    None => (item, None),
                };
                let connector: ConnectorName = name.parse()?;
                if entries.iter().any(|e| e.connector == connector) {
                    return Err(format!("`{connector}` appears twice in `{rule}`"));
                }
                entries.push(Entry { connector, weight });
            }
            rules.push(Rule { currency, entries });
        }
        Ok(Routing { rules })
    }
}

impl Routing {
    /// Each rule, in order: its currency (`None`: `*`) and its connectors
    /// with their weights.
    pub fn rules(
        &self,
    ) -> impl Iterator<Item = (Option<Currency>, Vec<(ConnectorName, Option<u32>)>)> + '_ {
        self.rules.iter().map(|rule| {
            let entries = rule
                .entries
                .iter()
                .map(|e| (e.connector, e.weight))
                .collect();
            (rule.currency, entries)
        })
    }

    /// Every connector a rule names that is not in `enabled`, for the
    /// startup check.
    pub fn unknown_to(&self, enabled: &[ConnectorName]) -> Option<ConnectorName> {
        self.rules
            .iter()
            .flat_map(|r| &r.entries)
            .map(|e| e.connector)
            .find(|c| !enabled.contains(c))
    }

    /// The connectors to try for a payment in `currency`, first choice
    /// first. `enabled` answers for a currency no rule matches.
    pub fn route(
        &self,
        currency: Currency,
        enabled: &[ConnectorName],
        rng: &mut impl Rng,
    ) -> Vec<ConnectorName> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.currency == Some(currency))
            .or_else(|| self.rules.iter().find(|r| r.currency.is_none()));
        let Some(rule) = rule else {
            return enabled.to_vec();
        };
        let weighted: Vec<Entry> = rule
            .entries
            .iter()
            .copied()
            .filter(|e| e.weight.is_some_and(|w| w > 0))
            .collect();
        let total: u64 = weighted
            .iter()
            .map(|e| u64::from(e.weight.unwrap_or(0)))
            .sum();
        let mut order = Vec::with_capacity(rule.entries.len());
        if total > 0 {
            let mut ticket = rng.random_range(0..total);
            for entry in &weighted {
                let weight = u64::from(entry.weight.unwrap_or(0));
                if ticket < weight {
                    order.push(entry.connector);
                    break;
                }
                ticket -= weight;
            }
        }
        for entry in weighted.iter().chain(&rule.entries) {
            if !order.contains(&entry.connector) {
                order.push(entry.connector);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectorName::{Flutterwave, Paystack};

    fn routing(text: &str) -> Routing {
        text.parse().unwrap()
    }

    #[test]
    fn the_design_example_parses() {
        let r = routing("NGN=paystack:70,flutterwave:30;GHS=flutterwave;*=paystack");
        assert_eq!(r.rules.len(), 3);
        assert_eq!(r.unknown_to(&[Paystack, Flutterwave]), None);
        assert_eq!(r.unknown_to(&[Paystack]), Some(Flutterwave));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (text, says) in [
            ("NGN=paystack:7.5", "whole number"),
            ("NGN=paystack:-1", "whole number"),
            ("NGN=stripe", "not a connector"),
            ("XYZ=paystack", "XYZ"),
            ("NGN", "CURRENCY="),
            ("NGN=paystack;NGN=flutterwave", "two rules"),
            ("NGN=paystack,paystack", "twice"),
        ] {
            let err = text.parse::<Routing>().unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn weights_split_first_choices_and_the_rest_follow() {
        let r = routing("NGN=paystack:70,flutterwave:30;*=flutterwave,paystack");
        let mut rng = rand::rng();
        let mut paystack_first = 0;
        for _ in 0..10_000 {
            let order = r.route(Currency::NGN, &[Paystack, Flutterwave], &mut rng);
            assert_eq!(order.len(), 2, "the other one is the fallback");
            if order[0] == Paystack {
                paystack_first += 1;
            }
        }
        assert!(
            (6_700..=7_300).contains(&paystack_first),
            "{paystack_first}"
        );
        assert_eq!(
            r.route(Currency::GHS, &[Paystack, Flutterwave], &mut rng),
            [Flutterwave, Paystack],
            "`*` is an order"
        );
    }

    #[test]
    fn a_currency_without_a_rule_goes_to_the_enabled_connectors() {
        let r = routing("NGN=flutterwave");
        let mut rng = rand::rng();
        assert_eq!(
            r.route(Currency::USD, &[Paystack, Flutterwave], &mut rng),
            [Paystack, Flutterwave]
        );
        assert_eq!(
            Routing::default().route(Currency::NGN, &[Flutterwave], &mut rng),
            [Flutterwave]
        );
    }

    #[test]
    fn zero_weights_are_fallbacks_only() {
        let r = routing("NGN=paystack:0,flutterwave:5");
        let mut rng = rand::rng();
        for _ in 0..100 {
            assert_eq!(
                r.route(Currency::NGN, &[Paystack, Flutterwave], &mut rng),
                [Flutterwave, Paystack]
            );
        }
    }

    #[test]
    fn sandbox_is_the_paystack_dialect() {
        assert_eq!(ConnectorName::of_stored("sandbox"), Some(Paystack));
        assert_eq!(ConnectorName::of_stored("flutterwave"), Some(Flutterwave));
        assert_eq!(ConnectorName::of_stored("stripe"), None);
    }
}
