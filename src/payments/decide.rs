//! What one event does to one payment, decided before anything is
//! written: the pure step of the apply pipeline ([`super::pipeline`]).
//!
//! [`decide`] reads the payment as it stands and the [`Change`] asked of
//! it, runs the state machine, and returns a [`Verdict`]: nothing to write,
//! a webhook from a connector that does not hold the payment (recorded,
//! nothing else), or the row update and audit row to write. Whether a
//! connector holds a payment is answered here alone ([`held_by`]).

use super::PaymentError;
use crate::{
    domain::{
        Amount, Currency, FlagReason, IgnoreReason, Outcome, PaymentEvent, PaymentStatus,
        ReviewKind, transition,
    },
    provider::routing::ConnectorName,
    store::payments::{Changes, Payment},
};

/// The outcome recorded for a webhook from a connector that does not hold
/// the payment.
pub(super) const OTHER_CONNECTOR: &str = "ignored:other_connector";

/// How often a version conflict is retried before giving up (503).
pub(super) const CONFLICT_RETRIES: usize = 8;

/// What caused an event, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Initialize,
    Verify,
    Webhook,
    /// The provider's answer to a refund request.
    Refund,
    /// A reconciliation sweep asked the provider.
    Reconcile,
    /// A settlement pass read the provider's transaction listing.
    Settlement,
    /// An operator resolved a review.
    Operator,
}

impl Source {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Source::Initialize => "initialize",
            Source::Verify => "verify",
            Source::Webhook => "webhook",
            Source::Refund => "refund",
            Source::Reconcile => "reconcile",
            Source::Settlement => "settlement",
            Source::Operator => "operator",
        }
    }
}

/// An event to apply, with the fields that go with it if it is applied.
#[derive(Debug, Clone)]
pub struct Change {
    pub event: PaymentEvent,
    pub source: Source,
    /// Set along with an applied status (a checkout link, a failure reason).
    pub fields: Changes,
    /// The connector the change comes from — the one that answered an
    /// initialize, or the one a webhook came in from: it counts only while
    /// that connector holds the payment (a slow answer from one the payment
    /// has failed over from is late; another connector's webhook is only
    /// recorded).
    pub connector: Option<&'static str>,
}

impl Change {
    pub fn new(event: PaymentEvent, source: Source) -> Change {
        Change {
            event,
            source,
            fields: Changes::default(),
            connector: None,
        }
    }

    /// A provider webhook's event, from the connector it came in under.
    pub fn delivered(event: PaymentEvent, provider: &str) -> Change {
        Change {
            connector: Some(
                ConnectorName::of_stored(provider).map_or("unknown", ConnectorName::as_str),
            ),
            ..Change::new(event, Source::Webhook)
        }
    }
}

/// What one event does to one payment, decided before anything is written.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Nothing worth a write: a poll that found nothing new.
    Unchanged(Outcome),
    /// A webhook from a connector that does not hold the payment (it failed
    /// over, or the event is not about this payment at all): its dedup row
    /// is recorded as [`OTHER_CONNECTOR`], nothing else.
    OtherConnector,
    /// A row update (if any) and an audit row.
    Write(Decision),
}

/// The writes of a [`Verdict::Write`].
#[derive(Debug)]
pub(super) struct Decision {
    pub(super) outcome: Outcome,
    /// The row update, if any. A delivered event that changes nothing on a
    /// row read without its lock still bumps the version, which proves the
    /// status the audit row describes was current when it was written.
    pub(super) update: Option<Changes>,
    pub(super) to: PaymentStatus,
    pub(super) cause: String,
}

/// The whole decision for `change` on `current`. `locked`: the row was read
/// under its lock; `delivered`: the event is a webhook (every one of those
/// gets an audit row, so every event can be traced).
pub(super) fn decide(
    current: &Payment,
    change: &Change,
    locked: bool,
    delivered: bool,
) -> Result<Verdict, PaymentError> {
    let held = change.connector.is_none_or(|c| held_by(current, c));
    if !held && delivered {
        tracing::warn!(
            reference = current.reference,
            holder = current.provider,
            from = change.connector,
            "webhook from a connector that does not hold the payment; ignored"
        );
        return Ok(Verdict::OtherConnector);
    }
    let status = status_of(current)?;
    let amount = Amount::new(current.amount).map_err(corrupt)?;
    let currency = Currency::parse(&current.currency).map_err(corrupt)?;
    let cause = |verdict: &str| {
        let base = format!("{}:{}", change.source.as_str(), change.event.name());
        if verdict.is_empty() {
            base
        } else {
            format!("{base}:{verdict}")
        }
    };
    let proof = (!locked).then(Changes::default);
    if let Some(connector) = change.connector.filter(|_| !held) {
        // The payment failed over to another connector meanwhile: this
        // connector's checkout (or refusal) is never shown.
        return Ok(Verdict::Write(Decision {
            outcome: Outcome::Ignored(IgnoreReason::Late),
            update: proof,
            to: status,
            cause: cause(&format!("ignored_not_held_by_{connector}")),
        }));
    }
    let outcome = transition(status, amount, currency, &change.event);
    let decision = match outcome {
        Outcome::Applied { to } => {
            let mut fields = change.fields.clone();
            fields.status = Some(to);
            fields.paid = to == PaymentStatus::Succeeded;
            Decision {
                outcome,
                update: Some(fields),
                to,
                cause: cause(""),
            }
        }
        Outcome::Flagged(reason) => {
            tracing::warn!(
                reference = current.reference,
                reason = reason.as_str(),
                "payment flagged"
            );
            Decision {
                outcome,
                update: Some(Changes {
                    failure_reason: Some(reason.as_str().to_owned()),
                    ..Changes::default()
                }),
                to: status,
                cause: cause(&format!("flagged_{}", reason.as_str())),
            }
        }
        // A checkout link for a pending payment that has none: a resumed
        // initialize found the transaction already open at the provider
        // (which hands out no second link) before the first attempt's
        // answer, with the link, came back. Keep the link.
        Outcome::Ignored(IgnoreReason::Duplicate)
            if current.authorization_url.is_none() && change.fields.authorization_url.is_some() =>
        {
            Decision {
                outcome,
                update: Some(Changes {
                    authorization_url: change.fields.authorization_url.clone(),
                    access_code: change.fields.access_code.clone(),
                    ..Changes::default()
                }),
                to: status,
                cause: cause("checkout_link_kept"),
            }
        }
        Outcome::Ignored(IgnoreReason::Duplicate) if !delivered => {
            return Ok(Verdict::Unchanged(outcome));
        }
        Outcome::Ignored(reason) => Decision {
            outcome,
            update: proof,
            to: status,
            cause: cause(&format!("ignored_{}", reason.as_str())),
        },
        Outcome::Rejected(reason) => Decision {
            outcome,
            update: proof,
            to: status,
            cause: cause(&format!("rejected_{}", reason.as_str())),
        },
    };
    Ok(Verdict::Write(decision))
}

/// Money that moved where payorch did not expect it: a payment-level
/// review to open (the pipeline writes it, once per subject, ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReviewAsked {
    pub(super) kind: ReviewKind,
    /// The connector that holds the money.
    pub(super) connector: String,
    /// What that connector reports it took, in minor units.
    pub(super) amount: i64,
    pub(super) currency: String,
}

/// The review `change` asks for on `current` (as it was before the
/// change), given what the state machine decided (`None`: not decided, the
/// change is only recorded). Only a provider's report of a charge that
/// succeeded opens one: at a connector that does not hold the payment
/// (`charged_at_other_connector`), after the payment was final
/// (`paid_after_final`), or for another amount or currency
/// (`amount_mismatch`).
pub(super) fn review_of(
    current: &Payment,
    change: &Change,
    outcome: Option<&Outcome>,
) -> Option<ReviewAsked> {
    let PaymentEvent::ChargeSucceeded { amount, currency } = change.event else {
        return None;
    };
    let asked = |kind, connector: &str| ReviewAsked {
        kind,
        connector: connector.to_owned(),
        amount: amount.get(),
        currency: currency.as_str().to_owned(),
    };
    if let Some(connector) = change.connector.filter(|c| !held_by(current, c)) {
        return Some(asked(ReviewKind::ChargedAtOtherConnector, connector));
    }
    let kind = match outcome? {
        Outcome::Flagged(FlagReason::SuccessAfterTerminal) => ReviewKind::PaidAfterFinal,
        Outcome::Flagged(FlagReason::AmountMismatch | FlagReason::CurrencyMismatch) => {
            ReviewKind::AmountMismatch
        }
        _ => return None,
    };
    Some(asked(kind, &current.provider))
}

/// Whether `connector` (a connector's name, or the name a webhook came in
/// under) holds `payment`: the one place this is answered.
pub(super) fn held_by(payment: &Payment, connector: &str) -> bool {
    let holder = ConnectorName::of_stored(&payment.provider);
    holder.is_some() && holder == ConnectorName::of_stored(connector)
}

/// How an event ended, for `webhook_events.outcome`.
pub fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied { to } => format!("applied:{}", to.as_str()),
        Outcome::Ignored(reason) => format!("ignored:{}", reason.as_str()),
        Outcome::Flagged(reason) => format!("flagged:{}", reason.as_str()),
        Outcome::Rejected(reason) => format!("rejected:{}", reason.as_str()),
    }
}

pub(super) fn status_of(payment: &Payment) -> Result<PaymentStatus, PaymentError> {
    PaymentStatus::parse(&payment.status).ok_or_else(|| {
        PaymentError::Internal(format!(
            "payment {} has status {:?}",
            payment.id, payment.status
        ))
    })
}

/// A stored row that no longer parses: a bug or a hand edit, never the client's fault.
pub(super) fn corrupt(err: crate::domain::DomainError) -> PaymentError {
    PaymentError::Internal(format!("stored payment is invalid: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(link: Option<&str>) -> Payment {
        let now = chrono::Utc::now();
        Payment {
            id: uuid::Uuid::now_v7(),
            client_id: uuid::Uuid::nil(),
            reference: "r-1".into(),
            client_reference: "r-1".into(),
            provider: "sandbox".into(),
            amount: 100,
            currency: "NGN".into(),
            email: "a@b.co".into(),
            status: "pending".into(),
            failure_reason: None,
            authorization_url: link.map(str::to_owned),
            access_code: link.map(|_| "ac_1".to_owned()),
            metadata: None,
            version: 1,
            created_at: now,
            updated_at: now,
            paid_at: None,
            refunded_amount: 0,
            checked_at: None,
            earlier_connectors: None,
        }
    }

    fn accepted_with_link() -> Change {
        Change {
            fields: Changes {
                authorization_url: Some("https://checkout/ac_2".into()),
                access_code: Some("ac_2".into()),
                ..Changes::default()
            },
            ..Change::new(PaymentEvent::ProviderAccepted, Source::Initialize)
        }
    }

    fn written(verdict: Verdict) -> Decision {
        match verdict {
            Verdict::Write(decision) => decision,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_late_checkout_link_is_kept_when_the_payment_has_none() {
        let decision = written(decide(&pending(None), &accepted_with_link(), true, false).unwrap());
        let update = decision.update.expect("the link is written");
        assert_eq!(
            update.authorization_url.as_deref(),
            Some("https://checkout/ac_2")
        );
        assert_eq!(update.status, None, "the status does not move");
        assert_eq!(decision.to, PaymentStatus::Pending);
    }

    #[test]
    fn a_checkout_from_a_connector_the_payment_failed_over_from_is_never_applied() {
        let mut created = pending(None);
        created.status = "created".into();
        created.provider = "flutterwave".into();
        let late = Change {
            connector: Some("paystack"),
            ..accepted_with_link()
        };
        for locked in [true, false] {
            let decision = written(decide(&created, &late, locked, false).unwrap());
            assert_eq!(decision.outcome, Outcome::Ignored(IgnoreReason::Late));
            assert_eq!(decision.to, PaymentStatus::Created);
            assert!(
                decision
                    .update
                    .as_ref()
                    .is_none_or(|u| u.authorization_url.is_none() && u.status.is_none()),
                "no link, no status"
            );
            assert!(decision.cause.ends_with("ignored_not_held_by_paystack"));
        }
        let current = Change {
            connector: Some("flutterwave"),
            ..accepted_with_link()
        };
        let decision = written(decide(&created, &current, true, false).unwrap());
        assert_eq!(
            decision.outcome,
            Outcome::Applied {
                to: PaymentStatus::Pending
            }
        );
    }

    fn paid(amount: i64, connector: Option<&'static str>) -> Change {
        Change {
            connector,
            ..Change::new(
                PaymentEvent::ChargeSucceeded {
                    amount: Amount::new(amount).unwrap(),
                    currency: Currency::parse("NGN").unwrap(),
                },
                Source::Webhook,
            )
        }
    }

    #[test]
    fn only_money_moving_where_it_should_not_asks_for_a_review() {
        let mut payment = pending(Some("https://checkout/ac_1"));
        payment.provider = "flutterwave".into();
        let asked = review_of(&payment, &paid(100, Some("paystack")), None).unwrap();
        assert_eq!(asked.kind, ReviewKind::ChargedAtOtherConnector);
        assert_eq!((asked.connector.as_str(), asked.amount), ("paystack", 100));

        let held = paid(100, Some("flutterwave"));
        let outcome = |payment: &Payment, change: &Change| {
            let status = status_of(payment).unwrap();
            transition(
                status,
                Amount::new(100).unwrap(),
                Currency::NGN,
                &change.event,
            )
        };
        assert_eq!(
            review_of(&payment, &held, Some(&outcome(&payment, &held))),
            None
        );
        let short = paid(50, Some("flutterwave"));
        let asked = review_of(&payment, &short, Some(&outcome(&payment, &short))).unwrap();
        assert_eq!((asked.kind, asked.amount), (ReviewKind::AmountMismatch, 50));
        for final_status in ["failed", "abandoned"] {
            payment.status = final_status.into();
            let asked = review_of(&payment, &held, Some(&outcome(&payment, &held))).unwrap();
            assert_eq!(asked.kind, ReviewKind::PaidAfterFinal);
            assert_eq!(asked.connector, "flutterwave");
        }
        payment.status = "succeeded".into();
        assert_eq!(
            review_of(&payment, &held, Some(&outcome(&payment, &held))),
            None,
            "a second success is a duplicate, never a review"
        );
        let failed = Change::new(PaymentEvent::ChargeFailed, Source::Webhook);
        assert_eq!(review_of(&payment, &failed, None), None);
    }

    #[test]
    fn a_second_checkout_link_never_replaces_the_first() {
        let verdict = decide(
            &pending(Some("https://checkout/ac_1")),
            &accepted_with_link(),
            true,
            false,
        )
        .unwrap();
        assert!(matches!(verdict, Verdict::Unchanged(_)));
    }

    #[test]
    fn a_webhook_from_a_connector_that_does_not_hold_the_payment_is_only_recorded() {
        let mut payment = pending(Some("https://checkout/ac_1"));
        payment.provider = "flutterwave".into();
        for locked in [true, false] {
            let verdict = decide(
                &payment,
                &Change::delivered(
                    PaymentEvent::ChargeSucceeded {
                        amount: Amount::new(100).unwrap(),
                        currency: Currency::parse("NGN").unwrap(),
                    },
                    "paystack",
                ),
                locked,
                true,
            )
            .unwrap();
            assert!(matches!(verdict, Verdict::OtherConnector), "{verdict:?}");
        }
        let held = decide(
            &payment,
            &Change::delivered(PaymentEvent::ChargeFailed, "flutterwave"),
            true,
            true,
        )
        .unwrap();
        assert!(matches!(held, Verdict::Write(_)), "{held:?}");
    }
}
