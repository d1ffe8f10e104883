//! Refunds: how much may go back, and what a provider's report does to a
//! refund. Pure, like the payment state machine.
//!
//! ```text
//! pending → succeeded | failed
//! pending → requires_review → succeeded | failed
//! ```
//!
//! - Only a `succeeded` payment can be refunded, and never for more than
//!   what is left: the amount minus every refund that has not failed
//!   (pending ones included — their money is already promised).
//! - A refund the provider cannot find is never failed on that account:
//!   after `PAYORCH_REFUND_REVIEW_AFTER_S` it `requires_review`, its
//!   amount still promised, until the provider or an operator settles it.
//! - A final refund never changes again: a late or repeated report is
//!   ignored, so a refund is never settled twice.
//! - Once the succeeded refunds add up to the whole amount, the payment
//!   moves `succeeded → refunded` (through the payment state machine).

use super::{Amount, PaymentStatus};

/// Where a refund is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    Pending,
    /// The provider has had no answer for it too long: an operator looks.
    /// Not final, and its amount stays promised.
    RequiresReview,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 4] = [
        RefundStatus::Pending,
        RefundStatus::RequiresReview,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
    ];

    /// Not settled yet (its amount promised, the provider still asked).
    pub const UNSETTLED: [RefundStatus; 2] = [RefundStatus::Pending, RefundStatus::RequiresReview];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::RequiresReview => "requires_review",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    pub fn parse(status: &str) -> Option<RefundStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == status)
    }
}

/// What the provider says of a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundReport {
    /// Still on its way (Paystack: pending, processing).
    Pending,
    /// The money went back (Paystack: processed).
    Processed,
    /// It will not (Paystack: failed).
    Failed,
}

/// The refund's new status, or `None`: the report changes nothing.
pub fn settle(status: RefundStatus, report: RefundReport) -> Option<RefundStatus> {
    match (status, report) {
        (RefundStatus::Pending, RefundReport::Processed) => Some(RefundStatus::Succeeded),
        (RefundStatus::Pending, RefundReport::Failed) => Some(RefundStatus::Failed),
        (RefundStatus::Pending, RefundReport::Pending) => None,
        // The provider's word settles a refund under review too.
        (RefundStatus::RequiresReview, RefundReport::Processed) => Some(RefundStatus::Succeeded),
        (RefundStatus::RequiresReview, RefundReport::Failed) => Some(RefundStatus::Failed),
        (RefundStatus::RequiresReview, RefundReport::Pending) => None,
        // Final: a late or repeated report never settles a refund twice.
        (RefundStatus::Succeeded | RefundStatus::Failed, _) => None,
    }
}

/// Why a refund cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundRefusal {
    /// The payment is not `succeeded` (nothing was received, or it is
    /// refunded in full already).
    NotRefundable,
    /// The amount is not a whole number of minor units above zero.
    NotPositive,
    /// More than what is left (`left`, possibly 0).
    OverRemaining { left: i64 },
}

/// The amount of a new refund of `requested` (everything left when
/// `None`) on a payment in `status` of `amount`, of which `promised` is
/// already refunded or being refunded.
pub fn refund_amount(
    status: PaymentStatus,
    amount: Amount,
    promised: i64,
    requested: Option<i64>,
) -> Result<Amount, RefundRefusal> {
    if status != PaymentStatus::Succeeded {
        return Err(RefundRefusal::NotRefundable);
    }
    let left = (amount.get() - promised).max(0);
    let wanted = requested.unwrap_or(left);
    if requested.is_some_and(|r| r <= 0) {
        return Err(RefundRefusal::NotPositive);
    }
    if wanted > left || wanted == 0 {
        return Err(RefundRefusal::OverRemaining { left });
    }
    Amount::new(wanted).map_err(|_| RefundRefusal::NotPositive)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn amount(n: i64) -> Amount {
        Amount::new(n).unwrap()
    }

    #[test]
    fn every_status_and_report() {
        use RefundReport as R;
        use RefundStatus as S;
        let table = [
            (S::Pending, R::Pending, None),
            (S::Pending, R::Processed, Some(S::Succeeded)),
            (S::Pending, R::Failed, Some(S::Failed)),
            (S::RequiresReview, R::Pending, None),
            (S::RequiresReview, R::Processed, Some(S::Succeeded)),
            (S::RequiresReview, R::Failed, Some(S::Failed)),
            (S::Succeeded, R::Pending, None),
            (S::Succeeded, R::Processed, None),
            (S::Succeeded, R::Failed, None),
            (S::Failed, R::Pending, None),
            (S::Failed, R::Processed, None),
            (S::Failed, R::Failed, None),
        ];
        for (status, report, expected) in table {
            assert_eq!(settle(status, report), expected, "{status:?} × {report:?}");
        }
    }

    #[test]
    fn only_a_succeeded_payment_is_refundable() {
        for status in PaymentStatus::ALL {
            let result = refund_amount(status, amount(1_000), 0, Some(100));
            assert_eq!(
                result.is_ok(),
                status == PaymentStatus::Succeeded,
                "{status:?}"
            );
        }
    }

    #[test]
    fn the_default_is_what_is_left() {
        let status = PaymentStatus::Succeeded;
        assert_eq!(
            refund_amount(status, amount(1_000), 300, None),
            Ok(amount(700))
        );
        assert_eq!(
            refund_amount(status, amount(1_000), 1_000, None),
            Err(RefundRefusal::OverRemaining { left: 0 })
        );
    }

    #[test]
    fn zero_negative_and_too_much_are_refused() {
        let status = PaymentStatus::Succeeded;
        assert_eq!(
            refund_amount(status, amount(1_000), 0, Some(0)),
            Err(RefundRefusal::NotPositive)
        );
        assert_eq!(
            refund_amount(status, amount(1_000), 0, Some(-5)),
            Err(RefundRefusal::NotPositive)
        );
        assert_eq!(
            refund_amount(status, amount(1_000), 400, Some(601)),
            Err(RefundRefusal::OverRemaining { left: 600 })
        );
        assert_eq!(
            refund_amount(status, amount(1_000), 400, Some(600)),
            Ok(amount(600))
        );
    }

    proptest! {
        /// Whatever sequence of requests is granted, the total never
        /// exceeds the payment.
        #[test]
        fn granted_refunds_never_exceed_the_amount(
            total in 1i64..1_000_000,
            requests in proptest::collection::vec(proptest::option::of(-10i64..600_000), 0..20),
        ) {
            let mut promised = 0;
            for requested in requests {
                if let Ok(granted) = refund_amount(
                    PaymentStatus::Succeeded, amount(total), promised, requested,
                ) {
                    promised += granted.get();
                }
                prop_assert!(promised <= total);
            }
        }
    }
}
