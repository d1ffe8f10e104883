//! Random sequences of provider events, duplicated and out of order, fed
//! to the state machine, with refunds beside them. Whatever the order:
//! a payment is credited at most once, and only for the amount and
//! currency asked; a final state never moves (but a refund of a paid one);
//! refunds never give back more than was paid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payorch::domain::{
    Amount, Currency, Outcome, PaymentEvent, PaymentStatus, RefundReport, RefundStatus,
    payment::transition,
    refund::{refund_amount, settle},
};

fuzz_target!(|input: (u32, u8, Vec<(u8, i64)>)| {
    let (amount, currency, steps) = input;
    let Ok(amount) = Amount::new(i64::from(amount)) else {
        return;
    };
    let currency = Currency::ALL[usize::from(currency) % Currency::ALL.len()];
    let mut status = PaymentStatus::Created;
    let mut credited = 0;
    let mut promised = 0i64;
    let mut refunds: Vec<(RefundStatus, i64)> = Vec::new();
    for (kind, value) in steps {
        let reported = Amount::new(value.rem_euclid(2 * amount.get()) + 1).unwrap_or(amount);
        let other = Currency::ALL[value.rem_euclid(Currency::ALL.len() as i64) as usize];
        let event = match kind % 11 {
            0 => PaymentEvent::ProviderAccepted,
            1 => PaymentEvent::ProviderRejected,
            2 => PaymentEvent::ChargePending,
            3 => PaymentEvent::ChargeSucceeded { amount, currency },
            4 => PaymentEvent::ChargeSucceeded {
                amount: reported,
                currency: other,
            },
            5 => PaymentEvent::ChargeFailed,
            6 => PaymentEvent::ChargeAbandoned,
            7 => PaymentEvent::Refunded,
            // A refund asked for, then its report.
            8 => {
                let requested = (value % 3 != 0).then_some(value);
                if let Ok(granted) = refund_amount(status, amount, promised, requested) {
                    promised += granted.get();
                    refunds.push((RefundStatus::Pending, granted.get()));
                }
                continue;
            }
            k => {
                if refunds.is_empty() {
                    continue;
                }
                let at = value.rem_euclid(refunds.len() as i64) as usize;
                let report = if k == 9 {
                    RefundReport::Processed
                } else {
                    RefundReport::Failed
                };
                let (was, refunded) = refunds[at];
                if let Some(now) = settle(was, report) {
                    assert_eq!(was, RefundStatus::Pending, "only a pending refund settles");
                    refunds[at].0 = now;
                    if now == RefundStatus::Failed {
                        promised -= refunded;
                    }
                }
                continue;
            }
        };
        let outcome = transition(status, amount, currency, &event);
        if let Outcome::Applied { to } = outcome {
            assert!(
                !status.is_terminal()
                    || (status == PaymentStatus::Succeeded && to == PaymentStatus::Refunded),
                "{status:?} moved to {to:?} on {event:?}"
            );
            if to == PaymentStatus::Succeeded {
                assert_eq!(event, PaymentEvent::ChargeSucceeded { amount, currency });
                credited += 1;
            }
            status = to;
        }
        assert!(credited <= 1, "credited twice");
        assert!(
            (0..=amount.get()).contains(&promised),
            "refunded {promised} of {amount:?}"
        );
    }
});
