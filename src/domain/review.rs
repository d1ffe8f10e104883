//! Reviews: what payorch cannot settle by itself. Only the provider's word
//! (an API answer or an authenticated webhook) or an operator's recorded
//! decision settles money; where payorch does not know, it opens a review
//! instead of guessing. Pure: the kinds, the operators' actions, and when
//! a refund the provider cannot find goes to review.

use std::time::Duration;

/// What a review is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewKind {
    /// A refund was, or may have been, sent and the provider has had no
    /// answer for it for `PAYORCH_REFUND_REVIEW_AFTER_S`.
    RefundOutcomeUnknown,
    /// A connector that no longer holds the payment reports it paid.
    ChargedAtOtherConnector,
    /// Paid after the payment was `failed` or `abandoned`.
    PaidAfterFinal,
    /// The provider reports another amount than the payment's.
    AmountMismatch,
    /// The provider reports a paid transaction payorch never made.
    UnknownTransaction,
}

impl ReviewKind {
    pub const ALL: [ReviewKind; 5] = [
        ReviewKind::RefundOutcomeUnknown,
        ReviewKind::ChargedAtOtherConnector,
        ReviewKind::PaidAfterFinal,
        ReviewKind::AmountMismatch,
        ReviewKind::UnknownTransaction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::RefundOutcomeUnknown => "refund_outcome_unknown",
            ReviewKind::ChargedAtOtherConnector => "charged_at_other_connector",
            ReviewKind::PaidAfterFinal => "paid_after_final",
            ReviewKind::AmountMismatch => "amount_mismatch",
            ReviewKind::UnknownTransaction => "unknown_transaction",
        }
    }

    pub fn parse(kind: &str) -> Option<ReviewKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// About a refund (its view shows it), rather than a payment.
    pub fn is_refund_level(self) -> bool {
        self == ReviewKind::RefundOutcomeUnknown
    }

    /// Money a connector took that payorch may give back with
    /// `refund_at_connector`: it belongs to one of payorch's payments.
    pub fn holds_refundable_money(self) -> bool {
        match self {
            ReviewKind::ChargedAtOtherConnector
            | ReviewKind::PaidAfterFinal
            | ReviewKind::AmountMismatch => true,
            ReviewKind::RefundOutcomeUnknown | ReviewKind::UnknownTransaction => false,
        }
    }
}

/// What payorch does with a payment paid after it was `failed` or
/// `abandoned` (`PAYORCH_LATE_SUCCESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LateSuccess {
    /// Open a `paid_after_final` review for an operator.
    #[default]
    Review,
    /// Open the review and refund the money at its connector at once
    /// (exactly once), recorded as the review's resolution.
    Refund,
}

impl LateSuccess {
    pub fn parse(value: &str) -> Option<LateSuccess> {
        match value {
            "review" => Some(LateSuccess::Review),
            "refund" => Some(LateSuccess::Refund),
            _ => None,
        }
    }
}

/// Open until resolved; resolved once.
pub const OPEN: &str = "open";
pub const RESOLVED: &str = "resolved";

/// Who resolved a review when the provider's word did.
pub const BY_PROVIDER: &str = "provider";
/// Who resolved a review when payorch's configuration decided
/// (`PAYORCH_LATE_SUCCESS=refund`).
pub const BY_POLICY: &str = "payorch:late_success";

/// How a review was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewAction {
    /// The provider answered (a look-up or a webhook) and settled it.
    Provider,
    /// An operator says the refund went through.
    MarkSucceeded,
    /// An operator says the refund did not; its amount is released.
    MarkFailed,
    /// Closed without touching money.
    Dismiss,
    /// payorch refunds the money at the connector that took it, exactly
    /// once (a refund of its own, sent and settled like any other).
    RefundAtConnector,
}

impl ReviewAction {
    pub const ALL: [ReviewAction; 5] = [
        ReviewAction::Provider,
        ReviewAction::MarkSucceeded,
        ReviewAction::MarkFailed,
        ReviewAction::Dismiss,
        ReviewAction::RefundAtConnector,
    ];

    /// What an operator may choose (the provider's action is not theirs).
    pub const OPERATOR: [ReviewAction; 4] = [
        ReviewAction::MarkSucceeded,
        ReviewAction::MarkFailed,
        ReviewAction::Dismiss,
        ReviewAction::RefundAtConnector,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewAction::Provider => "provider",
            ReviewAction::MarkSucceeded => "mark_succeeded",
            ReviewAction::MarkFailed => "mark_failed",
            ReviewAction::Dismiss => "dismiss",
            ReviewAction::RefundAtConnector => "refund_at_connector",
        }
    }

    pub fn parse(action: &str) -> Option<ReviewAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == action)
    }

    /// Whether `self` can close a review of `kind`: marking a refund's
    /// outcome only makes sense for a refund.
    pub fn applies_to(self, kind: ReviewKind) -> bool {
        match self {
            ReviewAction::MarkSucceeded | ReviewAction::MarkFailed => kind.is_refund_level(),
            ReviewAction::RefundAtConnector => kind.holds_refundable_money(),
            ReviewAction::Provider | ReviewAction::Dismiss => true,
        }
    }
}

/// What to do with a sent (or possibly sent) refund the provider's
/// look-up did not find, `waited` after it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnfoundRefund {
    /// Leave it pending and look again at the next sweep.
    LookAgain,
    /// Long enough: `requires_review`, and a review opens.
    Review,
}

/// A miss is never a failure: the provider may list the refund later, or
/// may have it under another id. Only after `review_after` does payorch
/// stop waiting and ask an operator.
pub fn unfound_refund(waited: Duration, review_after: Duration) -> UnfoundRefund {
    if waited >= review_after {
        UnfoundRefund::Review
    } else {
        UnfoundRefund::LookAgain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_actions_round_trip() {
        for kind in ReviewKind::ALL {
            assert_eq!(ReviewKind::parse(kind.as_str()), Some(kind));
        }
        for action in ReviewAction::ALL {
            assert_eq!(ReviewAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(ReviewKind::parse("refund"), None);
        assert_eq!(ReviewAction::parse("refund"), None);
        assert_eq!(LateSuccess::parse("review"), Some(LateSuccess::Review));
        assert_eq!(LateSuccess::parse("refund"), Some(LateSuccess::Refund));
        assert_eq!(LateSuccess::parse("ignore"), None);
    }

    #[test]
    fn only_money_at_a_connector_is_refunded_there() {
        let refundable: Vec<ReviewKind> = ReviewKind::ALL
            .into_iter()
            .filter(|k| ReviewAction::RefundAtConnector.applies_to(*k))
            .collect();
        assert_eq!(
            refundable,
            [
                ReviewKind::ChargedAtOtherConnector,
                ReviewKind::PaidAfterFinal,
                ReviewKind::AmountMismatch
            ]
        );
    }

    #[test]
    fn marking_an_outcome_is_for_refunds_only() {
        for kind in ReviewKind::ALL {
            assert!(ReviewAction::Dismiss.applies_to(kind));
            assert_eq!(
                ReviewAction::MarkFailed.applies_to(kind),
                kind == ReviewKind::RefundOutcomeUnknown
            );
        }
    }

    #[test]
    fn an_unfound_refund_waits_then_goes_to_review() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            unfound_refund(Duration::from_secs(60), day),
            UnfoundRefund::LookAgain
        );
        assert_eq!(unfound_refund(day, day), UnfoundRefund::Review);
        assert_eq!(
            unfound_refund(Duration::ZERO, Duration::ZERO),
            UnfoundRefund::Review
        );
    }
}
