//! Settlement reconciliation: each enabled connector's transaction listing
//! for a window, matched against payorch's payments. The sweep
//! ([`super::reconcile`]) asks about payments payorch knows are open; this
//! pass starts from the provider's side, so it also finds what payorch
//! would never ask about — a transaction it never made, money at a
//! connector a payment failed over from after the payment moved on, a
//! success that came after the payment was final.
//!
//! Only a listed transaction the provider reports paid moves anything (a
//! declined or pending row moves no money, and the sweep follows open
//! payments). Each paid row is applied as the provider's word through the
//! one apply pipeline — so a payment still open is settled, and a
//! difference opens its review there (`charged_at_other_connector`,
//! `paid_after_final`, `amount_mismatch`) — or, for a reference payorch
//! never made, opens `unknown_transaction`. Reviews open once per subject,
//! so running the same window twice opens nothing new.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};

use super::{
    PaymentError, Payments,
    decide::{Change, Source},
    service::PaymentService,
};
use crate::{
    domain::{Amount, Currency, Outcome, PaymentEvent, PaymentStatus, ReviewKind},
    provider::{ChargeStatus, ListedTransaction},
    store::{
        payments::{self, Payment},
        reviews,
    },
};

/// Rows judged at once: each is one short transaction (the pipeline's),
/// and the listing's payments were read in one query.
pub const CONCURRENCY: usize = 8;

/// What one connector's listing came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorSettlement {
    pub connector: &'static str,
    /// Transactions (attempts) listed in the window.
    pub listed: usize,
    /// Provider calls the listing took (its pages).
    pub provider_calls: u32,
    /// Paid rows that agreed with payorch already.
    pub matched: usize,
    /// Paid rows that moved a payment payorch had open (the provider's
    /// word, applied).
    pub settled: usize,
    /// Reviews this pass opened.
    pub reviews_opened: usize,
    /// Rows not judged (an amount the listing does not give exactly, a
    /// failed write): logged; the next pass tries again.
    pub errors: usize,
}

/// One settlement pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettlementReport {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Per enabled connector, in `PAYORCH_PROVIDERS` order.
    pub connectors: Vec<ConnectorSettlement>,
    /// Connectors whose listing failed (name, error): nothing judged there.
    pub failed: Vec<(&'static str, String)>,
}

/// How one paid row was judged.
enum Judged {
    Matched,
    Settled,
    Reviewed,
    Nothing,
}

impl Payments {
    /// Lists every enabled connector's transactions created in
    /// `[from, until)` and matches them against payorch's payments (see the
    /// module docs). A connector whose listing fails is reported, not
    /// retried: the next pass covers its window again.
    pub async fn settle(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<SettlementReport, PaymentError> {
        let mut report = SettlementReport {
            from: Some(from),
            until: Some(until),
            ..SettlementReport::default()
        };
        for (name, connector) in self.connectors.enabled() {
            let listing = match connector.list_transactions(from, until).await {
                Ok(listing) => listing,
                Err(err) => {
                    tracing::warn!(connector = name.as_str(), error = %err, "settlement listing failed");
                    report.failed.push((name.as_str(), err.to_string()));
                    continue;
                }
            };
            let mut settled = ConnectorSettlement {
                connector: name.as_str(),
                listed: listing.transactions.len(),
                provider_calls: listing.pages,
                ..ConnectorSettlement::default()
            };
            let paid: Vec<&ListedTransaction> = listing
                .transactions
                .iter()
                .filter(|t| t.status == ChargeStatus::Succeeded)
                .collect();
            let known = self.service.payments_named(&paid).await?;
            // Owned rows and payments: the futures borrow nothing of the pass.
            let rows: Vec<(ListedTransaction, Option<Payment>)> = paid
                .into_iter()
                .map(|row| (row.clone(), known.get(&row.reference).cloned()))
                .collect();
            let connector = name.as_str();
            let judged: Vec<(ListedTransaction, Result<Judged, PaymentError>)> = stream::iter(rows)
                .map(|(row, payment)| {
                    let service = self.service.clone();
                    async move {
                        let judged = service.judge(connector, &row, payment.as_ref()).await;
                        (row, judged)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for (row, judged) in judged {
                match judged {
                    Ok(Judged::Matched) => settled.matched += 1,
                    Ok(Judged::Settled) => settled.settled += 1,
                    Ok(Judged::Reviewed) => settled.reviews_opened += 1,
                    Ok(Judged::Nothing) => {}
                    Err(err) => {
                        tracing::warn!(
                            connector = name.as_str(),
                            reference = row.reference,
                            error = %err,
                            "settlement row not judged"
                        );
                        settled.errors += 1;
                    }
                }
            }
            for (result, n) in [
                ("matched", settled.matched),
                ("settled", settled.settled),
                ("review", settled.reviews_opened),
                ("error", settled.errors),
            ] {
                metrics::counter!(
                    "payorch_settlement_rows_total",
                    "connector" => name.as_str(),
                    "result" => result
                )
                .increment(n as u64);
            }
            report.connectors.push(settled);
        }
        if let Err(err) = self.count_open_reviews().await {
            tracing::warn!(error = %err, "counting open reviews failed");
        }
        Ok(report)
    }
}

impl PaymentService {
    /// The payments the listed rows name, by reference (one query).
    async fn payments_named(
        &self,
        rows: &[&ListedTransaction],
    ) -> Result<HashMap<String, Payment>, PaymentError> {
        let references: Vec<String> = rows.iter().map(|r| r.reference.clone()).collect();
        let mut found = HashMap::with_capacity(references.len());
        for chunk in references.chunks(500) {
            for payment in payments::find_many_by_reference(&self.db, chunk.to_vec()).await? {
                found.insert(payment.reference.clone(), payment);
            }
        }
        Ok(found)
    }

    /// One paid row of `connector`'s listing, against the payment it names
    /// (as read before the pass; the pipeline reads it again under its lock).
    async fn judge(
        &self,
        connector: &'static str,
        row: &ListedTransaction,
        payment: Option<&Payment>,
    ) -> Result<Judged, PaymentError> {
        let detail = || {
            serde_json::json!({
                "amount": row.amount,
                "currency": row.currency,
                "provider_transaction_id": row.provider_transaction_id,
                "status": row.status_word,
                "paid_at": row.paid_at,
                "source": "settlement",
            })
        };
        let Some(payment) = payment else {
            let txn = crate::store::begin_write(&self.db).await?;
            let opened = self
                .open_unknown_transaction(&txn, connector, &row.reference, detail())
                .await?;
            super::commit(txn).await?;
            return Ok(if opened {
                Judged::Reviewed
            } else {
                Judged::Nothing
            });
        };
        let (Some(amount), Ok(currency)) = (
            row.amount.and_then(|a| Amount::new(a).ok()),
            Currency::parse(&row.currency),
        ) else {
            return Err(PaymentError::Internal(format!(
                "the listing gives {:?} {} for {}, not an amount payorch can read",
                row.amount, row.currency, row.reference
            )));
        };
        // Found before (an earlier pass over an overlapping window): the
        // review says it already; nothing to write again.
        let repeat = if !super::decide::held_by(payment, connector) {
            Some((ReviewKind::ChargedAtOtherConnector, Some(connector)))
        } else if [PaymentStatus::Failed, PaymentStatus::Abandoned]
            .iter()
            .any(|s| payment.status == s.as_str())
        {
            Some((ReviewKind::PaidAfterFinal, None))
        } else {
            None
        };
        if let Some((kind, elsewhere)) = repeat
            && reviews::ever_opened(&self.db, kind, payment.id, elsewhere).await?
        {
            return Ok(Judged::Nothing);
        }
        // Only money where payorch did not expect it can open a review:
        // the common rows (an open or paid payment, same figures) skip the
        // counting.
        let may_review = repeat.is_some()
            || payment.amount != amount.get()
            || payment.currency != currency.as_str();
        let reviews_before = match may_review {
            true => self.reviews_of(payment).await?,
            false => 0,
        };
        let change = Change {
            connector: Some(connector),
            ..Change::new(
                PaymentEvent::ChargeSucceeded { amount, currency },
                Source::Settlement,
            )
        };
        let (after, outcome) = self.apply(payment.clone(), change).await?;
        if may_review && self.reviews_of(payment).await? > reviews_before {
            return Ok(Judged::Reviewed);
        }
        Ok(match outcome {
            Outcome::Applied { .. } => Judged::Settled,
            _ if after.status == PaymentStatus::Succeeded.as_str()
                || after.status == PaymentStatus::Refunded.as_str() =>
            {
                Judged::Matched
            }
            _ => Judged::Nothing,
        })
    }

    /// How many reviews `payment` has (open or not): a pass counts the
    /// ones it opened by the difference.
    async fn reviews_of(&self, payment: &Payment) -> Result<u64, PaymentError> {
        Ok(reviews::count_for_payment(&self.db, payment.id).await?)
    }
}

/// The window a daily pass covers: the period since the last one, and an
/// hour more (a transaction created just before the last pass may have been
/// paid after it; reviews open once, so the overlap costs only calls).
pub const OVERLAP: chrono::Duration = chrono::Duration::hours(1);

/// Runs a settlement pass every `every` (the first one `every` after
/// start) until `shutdown`: a worker's daily duty.
pub async fn run_settler(
    payments: Payments,
    every: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let span = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::days(1)) + OVERLAP;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let until = Utc::now();
        match payments.settle(until - span, until).await {
            Ok(report) => {
                for c in &report.connectors {
                    tracing::info!(
                        connector = c.connector,
                        listed = c.listed,
                        provider_calls = c.provider_calls,
                        matched = c.matched,
                        settled = c.settled,
                        reviews_opened = c.reviews_opened,
                        errors = c.errors,
                        "settlement pass"
                    );
                }
            }
            Err(err) => tracing::warn!(error = %err, "settlement pass failed"),
        }
    }
}
