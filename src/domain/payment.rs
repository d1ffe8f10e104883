//! The payment state machine: what an event from a provider does to a payment.
//!
//! ```text
//! created → pending → succeeded | failed | abandoned
//! succeeded → refunded
//! ```
//!
//! [`transition`] is a pure function of the current status, the amount and
//! currency the payment was created with, and the event. The caller (the
//! payment actor) applies an `Applied` outcome inside one database
//! transaction and records every outcome, applied or not, in the audit trail.
//!
//! Why each rule exists, all of them about never moving money wrongly:
//! - A success is applied only if the provider reports exactly the amount and
//!   currency we asked for; otherwise a customer could pay 1 kobo, or 100
//!   in a weaker currency, for a 50 000 NGN order. Such an event is
//!   `Flagged`: the status does not change and an operator looks.
//! - Terminal states never go back. Providers deliver webhooks late and out
//!   of order, so a `failed` arriving after `succeeded` is `Ignored(Late)`.
//! - A second success for a succeeded payment is `Ignored(Duplicate)`
//!   whatever its amount, so a payment can never be credited twice.
//! - A success after `failed` or `abandoned` means money may have moved after
//!   we called the payment final: it is `Flagged`, never applied
//!   automatically, because the merchant may already have released the order
//!   to someone else or told the customer to pay again.
//! - A refund is only meaningful for money we received, so it is `Rejected`
//!   for a payment that never succeeded.
//! - The provider refusing initialize fails a payment only while it is still
//!   `created`: once some attempt opened the transaction, a refusal (say, of
//!   the repeated reference) is stale and `Ignored(Late)`.
//! - A declined attempt on a checkout the customer can still pay
//!   (Flutterwave's) is not a failure: the next attempt may pay. It is
//!   `Ignored(AttemptDeclined)` and the payment stays pending, so the
//!   merchant is never told `failed` about a payment that then succeeds.
//!
//! The match in [`transition`] lists every (status, event) pair without a
//! wildcard, so adding a status or an event does not compile until someone
//! decides what it means.

use std::fmt;

use super::money::{Amount, Currency};

/// Where a payment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Stored by us; the provider has not confirmed a transaction yet.
    Created,
    /// The provider holds a transaction; the customer has not finished.
    Pending,
    Succeeded,
    Failed,
    Abandoned,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Created,
        PaymentStatus::Pending,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Abandoned,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::Created => "created",
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Abandoned => "abandoned",
            PaymentStatus::Refunded => "refunded",
        }
    }

    /// Reads a status back from storage; `None` means the row is corrupt.
    pub fn parse(status: &str) -> Option<PaymentStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == status)
    }

    /// A terminal payment never returns to `created` or `pending`.
    pub fn is_terminal(&self) -> bool {
        match self {
            PaymentStatus::Created | PaymentStatus::Pending => false,
            PaymentStatus::Succeeded
            | PaymentStatus::Failed
            | PaymentStatus::Abandoned
            | PaymentStatus::Refunded => true,
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a provider told us about a payment, by webhook or on verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    /// The provider created its transaction (initialize succeeded).
    ProviderAccepted,
    /// The provider refused to create the transaction (its 4xx on
    /// initialize). Only a payment that never reached the provider fails by it.
    ProviderRejected,
    /// The provider says the charge is still in progress.
    ChargePending,
    /// The provider says the charge succeeded, for this amount and currency
    /// as the provider reports them (not as we asked for them).
    ChargeSucceeded {
        amount: Amount,
        currency: Currency,
    },
    ChargeFailed,
    /// One attempt was declined on a checkout that stays payable: the
    /// customer may try again under the same reference.
    AttemptDeclined,
    /// The customer left the checkout without paying.
    ChargeAbandoned,
    Refunded,
}

impl PaymentEvent {
    pub fn name(&self) -> &'static str {
        match self {
            PaymentEvent::ProviderAccepted => "provider_accepted",
            PaymentEvent::ProviderRejected => "provider_rejected",
            PaymentEvent::ChargePending => "charge_pending",
            PaymentEvent::ChargeSucceeded { .. } => "charge_succeeded",
            PaymentEvent::ChargeFailed => "charge_failed",
            PaymentEvent::AttemptDeclined => "attempt_declined",
            PaymentEvent::ChargeAbandoned => "charge_abandoned",
            PaymentEvent::Refunded => "refunded",
        }
    }
}

/// Why an event was kept for an operator instead of being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagReason {
    AmountMismatch,
    CurrencyMismatch,
    SuccessAfterTerminal,
}

impl FlagReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FlagReason::AmountMismatch => "amount_mismatch",
            FlagReason::CurrencyMismatch => "currency_mismatch",
            FlagReason::SuccessAfterTerminal => "success_after_terminal",
        }
    }
}

/// Why an event was harmlessly dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// The payment already reflects this event (providers retry webhooks).
    Duplicate,
    /// The event describes a state the payment has already moved past.
    Late,
    /// A declined attempt on a checkout that can still be paid: not final.
    AttemptDeclined,
}

impl IgnoreReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            IgnoreReason::Duplicate => "duplicate",
            IgnoreReason::Late => "late",
            IgnoreReason::AttemptDeclined => "attempt_declined",
        }
    }
}

/// Why an event cannot apply to this payment at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    InvalidTransition,
}

impl RejectReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::InvalidTransition => "invalid_transition",
        }
    }
}

/// What [`transition`] decided. Only `Applied` changes the payment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Applied { to: PaymentStatus },
    Ignored(IgnoreReason),
    Flagged(FlagReason),
    Rejected(RejectReason),
}

/// Decides what `event` does to a payment in status `current` that was
/// created for `expected_amount` in `expected_currency`.
pub fn transition(
    current: PaymentStatus,
    expected_amount: Amount,
    expected_currency: Currency,
    event: &PaymentEvent,
) -> Outcome {
    use IgnoreReason::{Duplicate, Late};
    use PaymentEvent as E;
    use PaymentStatus as S;

    let applied = |to: PaymentStatus| Outcome::Applied { to };

    match (current, *event) {
        // Still open: the provider moves the payment forward.
        (S::Created, E::ProviderAccepted | E::ChargePending | E::AttemptDeclined) => {
            applied(S::Pending)
        }
        (S::Pending, E::ProviderAccepted | E::ChargePending) => Outcome::Ignored(Duplicate),
        // The customer may still pay on the same checkout.
        (S::Pending, E::AttemptDeclined) => Outcome::Ignored(IgnoreReason::AttemptDeclined),
        // Another attempt already opened the transaction: this refusal is stale.
        (S::Created, E::ProviderRejected) => applied(S::Failed),
        (S::Pending, E::ProviderRejected) => Outcome::Ignored(Late),
        (S::Created | S::Pending, E::ChargeSucceeded { amount, currency }) => {
            // Currency first: with the wrong currency the amount means nothing.
            if currency != expected_currency {
                Outcome::Flagged(FlagReason::CurrencyMismatch)
            } else if amount != expected_amount {
                Outcome::Flagged(FlagReason::AmountMismatch)
            } else {
                applied(S::Succeeded)
            }
        }
        (S::Created | S::Pending, E::ChargeFailed) => applied(S::Failed),
        (S::Created | S::Pending, E::ChargeAbandoned) => applied(S::Abandoned),
        (S::Created | S::Pending, E::Refunded) => {
            Outcome::Rejected(RejectReason::InvalidTransition)
        }

        // Paid: only a refund moves it; a second success is never credited.
        (S::Succeeded, E::ChargeSucceeded { .. }) => Outcome::Ignored(Duplicate),
        (S::Succeeded, E::Refunded) => applied(S::Refunded),
        (
            S::Succeeded,
            E::ProviderAccepted
            | E::ProviderRejected
            | E::ChargePending
            | E::ChargeFailed
            | E::AttemptDeclined
            | E::ChargeAbandoned,
        ) => Outcome::Ignored(Late),

        // Closed without money: a success now needs a human.
        (S::Failed, E::ChargeFailed) | (S::Abandoned, E::ChargeAbandoned) => {
            Outcome::Ignored(Duplicate)
        }
        (S::Failed | S::Abandoned, E::ChargeSucceeded { .. }) => {
            Outcome::Flagged(FlagReason::SuccessAfterTerminal)
        }
        (S::Failed | S::Abandoned, E::Refunded) => {
            Outcome::Rejected(RejectReason::InvalidTransition)
        }
        (
            S::Failed | S::Abandoned,
            E::ProviderAccepted
            | E::ProviderRejected
            | E::ChargePending
            | E::ChargeFailed
            | E::AttemptDeclined
            | E::ChargeAbandoned,
        ) => Outcome::Ignored(Late),

        // Money returned: nothing moves it again.
        (S::Refunded, E::Refunded) => Outcome::Ignored(Duplicate),
        (
            S::Refunded,
            E::ProviderAccepted
            | E::ProviderRejected
            | E::ChargePending
            | E::ChargeSucceeded { .. }
            | E::ChargeFailed
            | E::AttemptDeclined
            | E::ChargeAbandoned,
        ) => Outcome::Ignored(Late),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::FlagReason::{AmountMismatch, CurrencyMismatch, SuccessAfterTerminal};
    use super::IgnoreReason::{AttemptDeclined, Duplicate, Late};
    use super::PaymentEvent as E;
    use super::PaymentStatus as S;
    use super::RejectReason::InvalidTransition;
    use super::*;

    const EXPECTED_MINOR_UNITS: i64 = 50_000;
    const EXPECTED_CURRENCY: Currency = Currency::NGN;

    fn amount(minor_units: i64) -> Amount {
        Amount::new(minor_units).unwrap()
    }

    fn expected_amount() -> Amount {
        amount(EXPECTED_MINOR_UNITS)
    }

    fn decide(current: PaymentStatus, event: &PaymentEvent) -> Outcome {
        transition(current, expected_amount(), EXPECTED_CURRENCY, event)
    }

    fn paid() -> PaymentEvent {
        E::ChargeSucceeded {
            amount: expected_amount(),
            currency: EXPECTED_CURRENCY,
        }
    }

    fn paid_wrong_amount() -> PaymentEvent {
        E::ChargeSucceeded {
            amount: amount(EXPECTED_MINOR_UNITS - 1),
            currency: EXPECTED_CURRENCY,
        }
    }

    fn paid_wrong_currency() -> PaymentEvent {
        E::ChargeSucceeded {
            amount: expected_amount(),
            currency: Currency::GHS,
        }
    }

    fn to(status: PaymentStatus) -> Outcome {
        Outcome::Applied { to: status }
    }

    /// One sample of every event kind, with success in its three shapes.
    fn event_samples() -> [PaymentEvent; 10] {
        [
            E::ProviderAccepted,
            E::ProviderRejected,
            E::ChargePending,
            paid(),
            paid_wrong_amount(),
            paid_wrong_currency(),
            E::ChargeFailed,
            E::AttemptDeclined,
            E::ChargeAbandoned,
            E::Refunded,
        ]
    }

    /// Every (status, event) pair and the exact outcome the rules promise.
    fn table() -> Vec<(PaymentStatus, PaymentEvent, Outcome)> {
        use super::Outcome::{Flagged, Ignored, Rejected};
        vec![
            (S::Created, E::ProviderAccepted, to(S::Pending)),
            (S::Created, E::ProviderRejected, to(S::Failed)),
            (S::Created, E::ChargePending, to(S::Pending)),
            (S::Created, paid(), to(S::Succeeded)),
            (S::Created, paid_wrong_amount(), Flagged(AmountMismatch)),
            (S::Created, paid_wrong_currency(), Flagged(CurrencyMismatch)),
            (S::Created, E::ChargeFailed, to(S::Failed)),
            (S::Created, E::AttemptDeclined, to(S::Pending)),
            (S::Created, E::ChargeAbandoned, to(S::Abandoned)),
            (S::Created, E::Refunded, Rejected(InvalidTransition)),
            //
            (S::Pending, E::ProviderAccepted, Ignored(Duplicate)),
            (S::Pending, E::ProviderRejected, Ignored(Late)),
            (S::Pending, E::ChargePending, Ignored(Duplicate)),
            (S::Pending, paid(), to(S::Succeeded)),
            (S::Pending, paid_wrong_amount(), Flagged(AmountMismatch)),
            (S::Pending, paid_wrong_currency(), Flagged(CurrencyMismatch)),
            (S::Pending, E::ChargeFailed, to(S::Failed)),
            (S::Pending, E::AttemptDeclined, Ignored(AttemptDeclined)),
            (S::Pending, E::ChargeAbandoned, to(S::Abandoned)),
            (S::Pending, E::Refunded, Rejected(InvalidTransition)),
            //
            (S::Succeeded, E::ProviderAccepted, Ignored(Late)),
            (S::Succeeded, E::ProviderRejected, Ignored(Late)),
            (S::Succeeded, E::ChargePending, Ignored(Late)),
            (S::Succeeded, paid(), Ignored(Duplicate)),
            (S::Succeeded, paid_wrong_amount(), Ignored(Duplicate)),
            (S::Succeeded, paid_wrong_currency(), Ignored(Duplicate)),
            (S::Succeeded, E::ChargeFailed, Ignored(Late)),
            (S::Succeeded, E::AttemptDeclined, Ignored(Late)),
            (S::Succeeded, E::ChargeAbandoned, Ignored(Late)),
            (S::Succeeded, E::Refunded, to(S::Refunded)),
            //
            (S::Failed, E::ProviderAccepted, Ignored(Late)),
            (S::Failed, E::ProviderRejected, Ignored(Late)),
            (S::Failed, E::ChargePending, Ignored(Late)),
            (S::Failed, paid(), Flagged(SuccessAfterTerminal)),
            (
                S::Failed,
                paid_wrong_amount(),
                Flagged(SuccessAfterTerminal),
            ),
            (
                S::Failed,
                paid_wrong_currency(),
                Flagged(SuccessAfterTerminal),
            ),
            (S::Failed, E::ChargeFailed, Ignored(Duplicate)),
            (S::Failed, E::AttemptDeclined, Ignored(Late)),
            (S::Failed, E::ChargeAbandoned, Ignored(Late)),
            (S::Failed, E::Refunded, Rejected(InvalidTransition)),
            //
            (S::Abandoned, E::ProviderAccepted, Ignored(Late)),
            (S::Abandoned, E::ProviderRejected, Ignored(Late)),
            (S::Abandoned, E::ChargePending, Ignored(Late)),
            (S::Abandoned, paid(), Flagged(SuccessAfterTerminal)),
            (
                S::Abandoned,
                paid_wrong_amount(),
                Flagged(SuccessAfterTerminal),
            ),
            (
                S::Abandoned,
                paid_wrong_currency(),
                Flagged(SuccessAfterTerminal),
            ),
            (S::Abandoned, E::ChargeFailed, Ignored(Late)),
            (S::Abandoned, E::AttemptDeclined, Ignored(Late)),
            (S::Abandoned, E::ChargeAbandoned, Ignored(Duplicate)),
            (S::Abandoned, E::Refunded, Rejected(InvalidTransition)),
            //
            (S::Refunded, E::ProviderAccepted, Ignored(Late)),
            (S::Refunded, E::ProviderRejected, Ignored(Late)),
            (S::Refunded, E::ChargePending, Ignored(Late)),
            (S::Refunded, paid(), Ignored(Late)),
            (S::Refunded, paid_wrong_amount(), Ignored(Late)),
            (S::Refunded, paid_wrong_currency(), Ignored(Late)),
            (S::Refunded, E::ChargeFailed, Ignored(Late)),
            (S::Refunded, E::AttemptDeclined, Ignored(Late)),
            (S::Refunded, E::ChargeAbandoned, Ignored(Late)),
            (S::Refunded, E::Refunded, Ignored(Duplicate)),
        ]
    }

    #[test]
    fn every_pair_has_the_promised_outcome() {
        for (current, event, expected) in table() {
            assert_eq!(decide(current, &event), expected, "{current} + {event:?}");
        }
    }

    #[test]
    fn table_covers_every_pair_exactly_once() {
        let table = table();
        assert_eq!(
            table.len(),
            PaymentStatus::ALL.len() * event_samples().len()
        );
        for current in PaymentStatus::ALL {
            for event in event_samples() {
                let rows = table
                    .iter()
                    .filter(|(s, e, _)| *s == current && *e == event)
                    .count();
                assert_eq!(rows, 1, "{current} + {event:?} appears {rows} times");
            }
        }
    }

    #[test]
    fn samples_cover_every_event_kind() {
        // No wildcard: a new event kind stops this compiling until it is sampled.
        fn kind(event: &PaymentEvent) -> usize {
            match event {
                E::ProviderAccepted => 0,
                E::ChargePending => 1,
                E::ChargeSucceeded { .. } => 2,
                E::ChargeFailed => 3,
                E::ChargeAbandoned => 4,
                E::Refunded => 5,
                E::ProviderRejected => 6,
                E::AttemptDeclined => 7,
            }
        }
        let mut seen = [false; 8];
        for event in event_samples() {
            seen[kind(&event)] = true;
        }
        assert!(seen.iter().all(|s| *s), "kinds seen: {seen:?}");
    }

    #[test]
    fn amount_and_currency_both_wrong_is_a_currency_mismatch() {
        let event = E::ChargeSucceeded {
            amount: amount(1),
            currency: Currency::USD,
        };
        assert_eq!(
            decide(S::Pending, &event),
            Outcome::Flagged(CurrencyMismatch)
        );
    }

    #[test]
    fn status_names_round_trip() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(PaymentStatus::parse("Succeeded"), None);
        assert_eq!(PaymentStatus::parse(""), None);
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<PaymentStatus> = PaymentStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [S::Succeeded, S::Failed, S::Abandoned, S::Refunded]
        );
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<&str> = event_samples().iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "provider_accepted",
                "provider_rejected",
                "charge_pending",
                "charge_succeeded",
                "charge_succeeded",
                "charge_succeeded",
                "charge_failed",
                "attempt_declined",
                "charge_abandoned",
                "refunded",
            ]
        );
        assert_eq!(AmountMismatch.as_str(), "amount_mismatch");
        assert_eq!(CurrencyMismatch.as_str(), "currency_mismatch");
        assert_eq!(SuccessAfterTerminal.as_str(), "success_after_terminal");
        assert_eq!(Duplicate.as_str(), "duplicate");
        assert_eq!(Late.as_str(), "late");
        assert_eq!(AttemptDeclined.as_str(), "attempt_declined");
        assert_eq!(InvalidTransition.as_str(), "invalid_transition");
    }

    // --- Properties over random event sequences ---

    fn any_event() -> impl Strategy<Value = PaymentEvent> {
        // Small pools that include the expected values, so exact matches are common.
        let amounts = vec![
            amount(1),
            amount(EXPECTED_MINOR_UNITS - 1),
            amount(EXPECTED_MINOR_UNITS),
            amount(EXPECTED_MINOR_UNITS + 1),
        ];
        let currencies = vec![EXPECTED_CURRENCY, Currency::GHS, Currency::USD];
        prop_oneof![
            Just(E::ProviderAccepted),
            Just(E::ProviderRejected),
            Just(E::ChargePending),
            (
                prop::sample::select(amounts),
                prop::sample::select(currencies)
            )
                .prop_map(|(amount, currency)| E::ChargeSucceeded { amount, currency }),
            Just(E::ChargeFailed),
            Just(E::AttemptDeclined),
            Just(E::ChargeAbandoned),
            Just(E::Refunded),
        ]
    }

    /// One step of a payment's life: the status before, the event, the outcome.
    struct Step {
        from: PaymentStatus,
        event: PaymentEvent,
        outcome: Outcome,
    }

    /// Folds events from `created`, applying only `Applied` outcomes, as the
    /// payment actor does.
    fn replay(events: &[PaymentEvent]) -> Vec<Step> {
        let mut current = S::Created;
        let mut steps = Vec::with_capacity(events.len());
        for event in events {
            let outcome = decide(current, event);
            steps.push(Step {
                from: current,
                event: *event,
                outcome,
            });
            if let Outcome::Applied { to } = outcome {
                current = to;
            }
        }
        steps
    }

    fn status_after(step: &Step) -> PaymentStatus {
        match step.outcome {
            Outcome::Applied { to } => to,
            Outcome::Ignored(_) | Outcome::Flagged(_) | Outcome::Rejected(_) => step.from,
        }
    }

    fn is_exact_payment(event: &PaymentEvent) -> bool {
        *event == paid()
    }

    proptest! {
        #[test]
        fn terminal_is_forever(events in prop::collection::vec(any_event(), 0..20)) {
            let mut reached_terminal = false;
            for step in replay(&events) {
                let status = status_after(&step);
                prop_assert!(!reached_terminal || status.is_terminal(),
                    "left a terminal status: {} + {:?} -> {status}", step.from, step.event);
                reached_terminal |= status.is_terminal();
            }
        }

        #[test]
        fn paid_only_after_an_exact_success(events in prop::collection::vec(any_event(), 0..20)) {
            let mut exact_success_applied = false;
            for step in replay(&events) {
                if matches!(step.outcome, Outcome::Applied { .. }) && is_exact_payment(&step.event) {
                    exact_success_applied = true;
                }
                let status = status_after(&step);
                if matches!(status, S::Succeeded | S::Refunded) {
                    prop_assert!(exact_success_applied,
                        "{status} without an exact success applied: {events:?}");
                }
            }
        }

        #[test]
        fn credited_at_most_once(events in prop::collection::vec(any_event(), 0..20)) {
            let successes = replay(&events)
                .iter()
                .filter(|step| step.outcome == Outcome::Applied { to: S::Succeeded })
                .count();
            prop_assert!(successes <= 1, "{successes} successes applied: {events:?}");
        }

        #[test]
        fn refunded_only_from_succeeded(events in prop::collection::vec(any_event(), 0..20)) {
            for step in replay(&events) {
                if step.outcome == (Outcome::Applied { to: S::Refunded }) {
                    prop_assert_eq!(step.from, S::Succeeded);
                }
            }
        }
    }
}
