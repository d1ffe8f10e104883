//! The checker: payorch's database against the provider's truth
//! (`GET /_control/ledger`), the relay's record of acknowledged webhooks,
//! and what the merchant endpoints received. One [`Row`] per invariant;
//! every violation is named so a failing seed says what diverged.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement};
use serde_json::Value;
use uuid::Uuid;

use crate::{faults::Schedule, receiver, relay::Answer};

/// One invariant's result.
pub struct Row {
    pub name: &'static str,
    pub checked: usize,
    pub violations: Vec<String>,
}

impl Row {
    fn new(name: &'static str) -> Row {
        Row {
            name,
            checked: 0,
            violations: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations.push(what());
        }
    }
}

struct Payment {
    id: Uuid,
    reference: String,
    provider: String,
    amount: i64,
    currency: String,
    status: String,
    refunded_amount: i64,
    earlier: Vec<String>,
}

struct Refund {
    id: Uuid,
    payment_id: Uuid,
    status: String,
    provider_refund_id: Option<String>,
    connector: Option<String>,
}

struct Review {
    kind: String,
    payment_id: Uuid,
    refund_id: Option<Uuid>,
    open: bool,
}

/// Everything the checker reads, read once.
pub struct Evidence {
    pub ledger: Vec<Value>,
    payments: Vec<Payment>,
    refunds: Vec<Refund>,
    reviews: Vec<Review>,
    credited: HashMap<Uuid, i64>,
    applied_webhooks: HashSet<String>,
    events: Vec<(String, String)>,
    pub answers: Vec<Answer>,
    pub received: HashMap<&'static str, HashSet<String>>,
}

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<QueryResult> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
}

fn text(row: &QueryResult, col: &str) -> String {
    row.try_get("", col).unwrap()
}

impl Evidence {
    pub async fn gather(
        db: &DatabaseConnection,
        ledger: Vec<Value>,
        answers: Vec<Answer>,
        received: HashMap<&'static str, HashSet<String>>,
    ) -> Evidence {
        let payments = rows(
            db,
            "SELECT id, reference, provider, amount, currency, status, refunded_amount, \
             earlier_connectors FROM payments",
        )
        .await
        .iter()
        .map(|r| Payment {
            id: r.try_get("", "id").unwrap(),
            reference: text(r, "reference"),
            provider: text(r, "provider"),
            amount: r.try_get("", "amount").unwrap(),
            currency: text(r, "currency"),
            status: text(r, "status"),
            refunded_amount: r.try_get("", "refunded_amount").unwrap(),
            earlier: r
                .try_get::<Option<String>>("", "earlier_connectors")
                .unwrap()
                .unwrap_or_default()
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
        })
        .collect();
        let refunds = rows(
            db,
            "SELECT id, payment_id, status, provider_refund_id, connector FROM refunds",
        )
        .await
        .iter()
        .map(|r| Refund {
            id: r.try_get("", "id").unwrap(),
            payment_id: r.try_get("", "payment_id").unwrap(),
            status: text(r, "status"),
            provider_refund_id: r.try_get("", "provider_refund_id").unwrap(),
            connector: r.try_get("", "connector").unwrap(),
        })
        .collect();
        let reviews = rows(
            db,
            "SELECT kind, payment_id, refund_id, status FROM reviews",
        )
        .await
        .iter()
        .map(|r| Review {
            kind: text(r, "kind"),
            payment_id: r.try_get("", "payment_id").unwrap(),
            refund_id: r.try_get("", "refund_id").unwrap(),
            open: text(r, "status") == "open",
        })
        .collect();
        let credited = rows(
            db,
            "SELECT payment_id, COUNT(*) AS n FROM payment_transitions \
             WHERE to_status = 'succeeded' AND from_status <> 'succeeded' \
             GROUP BY payment_id",
        )
        .await
        .iter()
        .map(|r| {
            (
                r.try_get("", "payment_id").unwrap(),
                r.try_get("", "n").unwrap(),
            )
        })
        .collect();
        let applied_webhooks = rows(
            db,
            "SELECT event_id FROM webhook_events WHERE processed_at IS NOT NULL",
        )
        .await
        .iter()
        .map(|r| text(r, "event_id"))
        .collect();
        let events = rows(db, "SELECT id, type FROM events")
            .await
            .iter()
            .map(|r| (text(r, "id"), text(r, "type")))
            .collect();
        Evidence {
            ledger,
            payments,
            refunds,
            reviews,
            credited,
            applied_webhooks,
            events,
            answers,
            received,
        }
    }

    fn entry(&self, provider: &str, reference: &str) -> Option<&Value> {
        self.ledger
            .iter()
            .find(|e| e["provider"] == provider && e["reference"] == reference)
    }

    fn open_review_names(&self, payment: Uuid) -> bool {
        self.reviews
            .iter()
            .any(|r| r.open && r.payment_id == payment)
    }

    /// Every merchant event delivered to every endpoint that wants it.
    pub fn undelivered_events(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (endpoint, wants) in receiver::ENDPOINTS {
            let received = self.received.get(endpoint).cloned().unwrap_or_default();
            for (id, kind) in &self.events {
                let wanted = wants.is_empty() || wants.contains(&kind.as_str());
                if wanted && !received.contains(id) {
                    missing.push(format!("{kind} {id} never reached {endpoint}"));
                }
            }
        }
        missing
    }

    pub fn check(&self, schedule: &Schedule) -> Vec<Row> {
        vec![
            self.payments_match_provider(),
            self.money_elsewhere_reviewed(),
            self.credited_once(),
            self.refunds_sent_once(),
            self.refunds_settled_as_provider_says(),
            self.refunded_within_amount(),
            self.acknowledged_webhooks_applied(),
            self.merchant_events_delivered(),
            self.reviews_explained(schedule),
        ]
    }

    fn payments_match_provider(&self) -> Row {
        let mut row = Row::new("payment status and amount = provider's (or open review)");
        for p in &self.payments {
            let credited = matches!(p.status.as_str(), "succeeded" | "refunded");
            let entry = self.entry(&p.provider, &p.reference);
            let paid = entry.is_some_and(is_paid);
            let same_money = entry.is_none_or(|e| {
                !paid || (e["amount"] == p.amount && e["currency"] == p.currency.as_str())
            });
            let ok = (paid == credited && same_money) || self.open_review_names(p.id);
            row.check(ok, || {
                format!(
                    "{} at {}: payorch {} {} {}, provider {}",
                    p.reference,
                    p.provider,
                    p.status,
                    p.amount,
                    p.currency,
                    entry.map_or("nothing".into(), |e| format!(
                        "{} {} {}",
                        e["status"], e["amount"], e["currency"]
                    ))
                )
            });
        }
        row
    }

    /// A paid transaction at a connector that does not hold the payment
    /// (failed over from), or that payorch never made, has a review.
    fn money_elsewhere_reviewed(&self) -> Row {
        let mut row = Row::new("money at another connector is reviewed");
        for entry in self.ledger.iter().filter(|e| is_paid(e)) {
            let provider = entry["provider"].as_str().unwrap_or_default();
            let reference = entry["reference"].as_str().unwrap_or_default();
            let Some(payment) = self.payments.iter().find(|p| p.reference == reference) else {
                row.check(false, || {
                    format!("{reference} paid at {provider}: no payment")
                });
                continue;
            };
            if payment.provider == provider {
                continue;
            }
            let reviewed = self
                .reviews
                .iter()
                .any(|r| r.payment_id == payment.id && r.kind == "charged_at_other_connector");
            row.check(reviewed, || {
                format!(
                    "{reference} paid at {provider} (earlier: {:?}), held by {}: no review",
                    payment.earlier, payment.provider
                )
            });
        }
        row
    }

    fn credited_once(&self) -> Row {
        let mut row = Row::new("no payment credited twice");
        for p in &self.payments {
            let n = self.credited.get(&p.id).copied().unwrap_or(0);
            row.check(n <= 1, || format!("{} credited {n} times", p.reference));
        }
        row
    }

    /// At each connector, no more refunds than payorch made there.
    fn refunds_sent_once(&self) -> Row {
        let mut row = Row::new("no refund sent twice at the provider");
        for p in &self.payments {
            let Some(entry) = self.entry(&p.provider, &p.reference) else {
                continue;
            };
            let at_provider = entry["refunds"].as_array().map_or(0, Vec::len);
            let ours = self
                .refunds
                .iter()
                .filter(|r| r.payment_id == p.id && r.connector.is_none())
                .count();
            row.check(at_provider <= ours, || {
                format!(
                    "{}: {at_provider} refunds at {}, payorch made {ours}",
                    p.reference, p.provider
                )
            });
        }
        let mut ids = HashSet::new();
        for r in &self.refunds {
            if let Some(id) = &r.provider_refund_id {
                row.check(ids.insert(id.clone()), || {
                    format!("provider refund {id} is two of payorch's refunds")
                });
            }
        }
        row
    }

    fn refunds_settled_as_provider_says(&self) -> Row {
        let mut row = Row::new("refunds settled as the provider says (or open review)");
        let all: Vec<&Value> = self
            .ledger
            .iter()
            .flat_map(|e| e["refunds"].as_array().into_iter().flatten())
            .collect();
        let by_id: HashMap<String, &Value> =
            all.iter().map(|r| (r["id"].to_string(), *r)).collect();
        // payorch's refund id travels as the merchant note: a refund whose
        // answer was lost has no provider id in payorch.
        let by_note: HashMap<&str, &Value> = all
            .iter()
            .filter_map(|r| r["merchant_note"].as_str().map(|note| (note, *r)))
            .collect();
        for refund in &self.refunds {
            let theirs = refund
                .provider_refund_id
                .as_ref()
                .and_then(|id| by_id.get(id))
                .or_else(|| by_note.get(refund.id.to_string().as_str()));
            let word = theirs.and_then(|r| r["status"].as_str()).unwrap_or("none");
            let agrees = match word {
                "processed" | "completed" => refund.status == "succeeded",
                "failed" => refund.status == "failed",
                // Never reached the provider: refused or still to send.
                "none" => refund.status == "failed",
                _ => false,
            };
            let reviewed = self
                .reviews
                .iter()
                .any(|r| r.open && r.refund_id == Some(refund.id));
            row.check(agrees || reviewed, || {
                format!(
                    "refund {} ({:?}): payorch {}, provider {word}",
                    refund.id, refund.provider_refund_id, refund.status
                )
            });
        }
        row
    }

    fn refunded_within_amount(&self) -> Row {
        let mut row = Row::new("refunded totals never above the amount");
        for p in &self.payments {
            row.check(p.refunded_amount <= p.amount, || {
                format!(
                    "{}: payorch refunded {} of {}",
                    p.reference, p.refunded_amount, p.amount
                )
            });
            if let Some(entry) = self.entry(&p.provider, &p.reference) {
                let total: i64 = entry["refunds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["status"] != "failed")
                    .filter_map(|r| r["amount"].as_i64())
                    .sum();
                row.check(total <= p.amount, || {
                    format!("{}: provider refunded {total} of {}", p.reference, p.amount)
                });
            }
        }
        row
    }

    fn acknowledged_webhooks_applied(&self) -> Row {
        let mut row = Row::new("every webhook answered 2xx was applied");
        let acknowledged: HashSet<&str> = self
            .answers
            .iter()
            .filter(|a| (200..300).contains(&a.status))
            .map(|a| a.key.as_str())
            .collect();
        for key in acknowledged {
            row.check(self.applied_webhooks.contains(key), || {
                format!("{key} answered 2xx, not applied")
            });
        }
        row
    }

    fn merchant_events_delivered(&self) -> Row {
        let mut row = Row::new("every merchant event reached each endpoint wanting it");
        let missing = self.undelivered_events();
        row.checked = receiver::ENDPOINTS
            .iter()
            .map(|(_, wants)| {
                self.events
                    .iter()
                    .filter(|(_, kind)| wants.is_empty() || wants.contains(&kind.as_str()))
                    .count()
            })
            .sum();
        row.violations = missing;
        row
    }

    fn reviews_explained(&self, schedule: &Schedule) -> Row {
        let mut row = Row::new("every open review explained by an injected fault");
        let lost_initialize = schedule.injected("initialize", &["error", "hang", "error_after"]);
        let refund_trouble = schedule.injected("refund", &["error", "hang", "error_after"])
            || schedule.injected("refund_lookup", &["not_found", "error"]);
        for review in self.reviews.iter().filter(|r| r.open) {
            let explained = match review.kind.as_str() {
                "charged_at_other_connector" => lost_initialize,
                "refund_outcome_unknown" => refund_trouble,
                _ => false,
            };
            row.check(explained, || {
                format!(
                    "open {} review of payment {}",
                    review.kind, review.payment_id
                )
            });
        }
        row
    }
}

fn is_paid(entry: &Value) -> bool {
    matches!(entry["status"].as_str(), Some("success" | "successful"))
}
