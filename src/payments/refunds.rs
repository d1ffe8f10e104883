//! Refunds inside the payment core. Creating one promises its amount in
//! the same statement that checks the bound ([`refunds::promise`]), so the
//! refunds of a payment never add up past its amount, across processes.
//! Sending one to the provider happens in the payment's actor and at most
//! once per refund (`unsent → sending → sent`): an answer lost on the way
//! back leaves the refund pending for reconciliation, which looks the
//! refund up at the provider instead of asking again. A refund the
//! look-up does not find is never failed on that account (the provider's
//! word settles money, not its silence): it is looked up again at each
//! sweep and, after `PAYORCH_REFUND_REVIEW_AFTER_S`, goes to review
//! ([`super::reviews`]).

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use uuid::Uuid;

use super::{
    Answer, Idempotent, PaymentError, Payments, Rendered, commit,
    decide::{CONFLICT_RETRIES, Change, OTHER_CONNECTOR, Source, corrupt, status_of},
    idempotency::{self, Reservation},
    pipeline::{Holding, too_contended},
    service::PaymentService,
};
use crate::{
    domain::webhook::RefundNotice,
    domain::{
        Amount, Currency, FieldError, PaymentEvent, Reference, RefundRefusal, RefundReport,
        RefundStatus, ReviewAction, refund,
        review::{self, BY_PROVIDER, UnfoundRefund},
    },
    provider::{ProviderError, RefundRequest, routing::ConnectorName},
    store::{
        payments::{self, Payment},
        refunds::{self, NewRefund, Refund, SENDING, SENT, UNSENT},
        reviews::{self, Resolution},
        webhooks::{self, WebhookRecord},
    },
};

/// The provider's word closes a refund's review.
fn by_provider() -> Resolution {
    Resolution {
        by: BY_PROVIDER.to_owned(),
        action: ReviewAction::Provider,
        note: None,
    }
}

/// A validated request for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefundRequest {
    /// Minor units; `None`: everything that is left.
    pub amount: Option<i64>,
    pub reason: Option<String>,
}

/// Creates a pending refund of `client_id`'s payment `reference` (its own
/// reference) in `txn`, promising its amount; refused (final errors) when
/// the payment is not refundable or not for that much. With it, the
/// reference the provider knows the payment by.
pub(super) async fn create(
    txn: &DatabaseTransaction,
    client_id: Uuid,
    reference: &str,
    request: &NewRefundRequest,
) -> Result<(Refund, String), PaymentError> {
    let payment = payments::find_owned(txn, client_id, reference)
        .await?
        .ok_or(PaymentError::NotFound)?;
    let amount = grantable(&payment, request)?;
    if !refunds::promise(txn, payment.id, amount).await? {
        // Another refund or a state change got there first: judge again
        // on what the row says now.
        let now = payments::find_by_id(txn, payment.id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        grantable(&now, request)?;
        return Err(too_contended());
    }
    let refund = refunds::insert(
        txn,
        NewRefund {
            payment_id: payment.id,
            client_id,
            amount,
            currency: &payment.currency,
            reason: request.reason.clone(),
            connector: None,
            review_id: None,
        },
    )
    .await?;
    crate::events::record_refund(txn, &refund, &payment.client_reference, None).await?;
    Ok((refund, payment.reference))
}

/// The amount a refund of `payment` may have, or why none.
fn grantable(payment: &Payment, request: &NewRefundRequest) -> Result<Amount, PaymentError> {
    let status = status_of(payment)?;
    let amount = Amount::new(payment.amount).map_err(corrupt)?;
    refund::refund_amount(status, amount, payment.refunded_amount, request.amount).map_err(
        |refusal| match refusal {
            RefundRefusal::NotRefundable => PaymentError::NotRefundable,
            RefundRefusal::NotPositive => PaymentError::Invalid(vec![FieldError::new(
                "amount",
                "must be a whole number of minor units above 0",
            )]),
            RefundRefusal::OverRemaining { left } => PaymentError::Invalid(vec![FieldError::new(
                "amount",
                format!("at most {left} is left to refund"),
            )]),
        },
    )
}

impl PaymentService {
    /// Asks the provider for the refund `refund_id`, once: a refund already
    /// sent (or being sent) is returned as it is.
    pub(super) async fn send_refund(&self, refund_id: Uuid) -> Result<Refund, PaymentError> {
        let refund = self.refund(refund_id).await?;
        if refund.dispatch != UNSENT {
            return Ok(refund);
        }
        // Its connector first: one that is not enabled here leaves the
        // refund unsent (for a process that has it), never `sending`.
        let payment = self.payment_of(&refund).await?;
        let connector = self.refund_connector(&payment, &refund)?;
        if !refunds::mark_dispatch(&self.db, refund_id, UNSENT, SENDING, None).await? {
            return self.refund(refund_id).await;
        }
        let request = RefundRequest {
            refund_id,
            reference: Reference::parse(&payment.reference).map_err(corrupt)?,
            amount: Amount::new(refund.amount).map_err(corrupt)?,
            currency: Currency::parse(&refund.currency).map_err(corrupt)?,
            reason: refund.reason.clone(),
        };
        match connector.refund(&request).await {
            Ok(answer) => {
                refunds::mark_dispatch(
                    &self.db,
                    refund_id,
                    SENDING,
                    SENT,
                    Some(&answer.provider_refund_id),
                )
                .await?;
                self.settle_refund(&payment.reference, refund_id, answer.report, Source::Refund)
                    .await
            }
            Err(ProviderError::Rejected(message)) => {
                refunds::mark_dispatch(&self.db, refund_id, SENDING, SENT, None).await?;
                self.settle_refund(
                    &payment.reference,
                    refund_id,
                    RefundReport::Failed,
                    Source::Refund,
                )
                .await?;
                Err(ProviderError::Rejected(message).into())
            }
            Err(err @ ProviderError::CircuitOpen(_)) => {
                // Certainly not sent: unsent again, so reconciliation sends
                // it once the connector is back.
                refunds::mark_dispatch(&self.db, refund_id, SENDING, UNSENT, None).await?;
                tracing::warn!(%refund_id, error = %err, "refund not sent; left pending");
                self.refund(refund_id).await
            }
            Err(err) => {
                // It may or may not have arrived: never sent again, found
                // by reconciliation instead.
                tracing::warn!(%refund_id, error = %err, "refund answer lost; left pending");
                self.refund(refund_id).await
            }
        }
    }

    /// Applies what the provider reports of a refund (see [`Self::settle_refund_with`]).
    pub(super) async fn settle_refund(
        &self,
        reference: &str,
        refund_id: Uuid,
        report: RefundReport,
        source: Source,
    ) -> Result<Refund, PaymentError> {
        self.settle_refund_with(reference, refund_id, report, source, None, &by_provider())
            .await?;
        self.refund(refund_id).await
    }

    /// A refund webhook: the refund it names settled, exactly once per
    /// event. `Ok(false)`: a duplicate, or a refund payorch did not make
    /// (recorded, nothing changed).
    pub(super) async fn apply_refund_webhook(
        &self,
        record: &WebhookRecord,
        notice: &RefundNotice,
        report: RefundReport,
    ) -> Result<bool, PaymentError> {
        let ours = notice
            .merchant_note
            .as_deref()
            .and_then(|note| Uuid::parse_str(note).ok());
        let candidates =
            refunds::find_reported(&self.db, notice.provider_refund_id.as_deref(), ours).await?;
        if candidates.is_empty() {
            tracing::warn!(
                reference = record.reference,
                "refund event for a refund payorch did not make; recorded, not applied"
            );
            return Ok(webhooks::insert(&self.db, record, "ignored:unknown_refund").await?);
        }
        // Scoped to the connector that reports it: its ids are its own.
        let mut refund = None;
        for candidate in candidates {
            let payment = self.payment_of(&candidate).await?;
            let sent_to = candidate.connector.as_deref().unwrap_or(&payment.provider);
            if ConnectorName::of_stored(sent_to) == ConnectorName::of_stored(&record.provider) {
                refund = Some(candidate);
                break;
            }
        }
        let Some(refund) = refund else {
            tracing::warn!(
                reference = record.reference,
                "refund event from a connector the refund was not sent to; recorded, not applied"
            );
            return Ok(webhooks::insert(&self.db, record, OTHER_CONNECTOR).await?);
        };
        // Found by payorch's own id (its answer was lost): the provider's
        // word proves it sent, and names its id.
        if let Some(provider_refund_id) = notice.provider_refund_id.as_deref()
            && refund.provider_refund_id.is_none()
        {
            refunds::record_sent(&self.db, refund.id, provider_refund_id).await?;
        }
        self.settle_refund_with(
            &record.reference,
            refund.id,
            report,
            Source::Webhook,
            Some(record),
            &by_provider(),
        )
        .await
    }

    /// In one transaction: the refund settled as `report` says (once), a
    /// failed refund's amount released, the audit row, and — when the
    /// succeeded refunds now cover the payment — `succeeded → refunded`
    /// through the state machine; with `webhook`, its dedup row too; an
    /// open review of the refund resolved as `resolution` says.
    /// `Ok(false)`: the webhook was processed before. An operator's
    /// decision on a refund settled already is refused (nothing written).
    pub(super) async fn settle_refund_with(
        &self,
        reference: &str,
        refund_id: Uuid,
        report: RefundReport,
        source: Source,
        webhook: Option<&WebhookRecord>,
        resolution: &Resolution,
    ) -> Result<bool, PaymentError> {
        let event_id = webhook.map(|record| record.event_id.as_str());
        for _ in 0..CONFLICT_RETRIES {
            let (txn, mut holding) = self.hold([reference.to_owned()]).await?;
            let payment = holding.only().cloned().ok_or(PaymentError::NotFound)?;
            let refund = refunds::find(&txn, refund_id)
                .await?
                .filter(|r| r.payment_id == payment.id)
                .ok_or(PaymentError::NotFound)?;
            let status = RefundStatus::parse(&refund.status)
                .ok_or_else(|| PaymentError::Internal(format!("refund {refund_id} status")))?;
            let next = refund::settle(status, report);
            let label = match next {
                Some(to) => format!("refund:{}", to.as_str()),
                None => "ignored:refund_settled".to_owned(),
            };
            if let Some(record) = webhook
                && !webhooks::insert(&txn, record, &label).await?
            {
                txn.rollback().await?;
                return Ok(false);
            }
            let Some(to) = next else {
                if source == Source::Operator {
                    txn.rollback().await?;
                    return Err(PaymentError::Invalid(vec![FieldError::new(
                        "action",
                        format!("the refund is {} already", status.as_str()),
                    )]));
                }
                super::commit(txn).await?;
                return Ok(true);
            };
            let failure = (to == RefundStatus::Failed).then_some(match source {
                Source::Refund => "provider_rejected",
                Source::Reconcile => "provider_failed",
                Source::Operator => "operator_marked_failed",
                _ => "provider_failed",
            });
            if !refunds::settle(&txn, refund_id, to, failure).await? {
                // Settled meanwhile by another attempt: decide again.
                txn.rollback().await?;
                continue;
            }
            // A review's refund gives back money taken elsewhere: it never
            // promised any of the payment's own.
            let own = refund.review_id.is_none();
            if to == RefundStatus::Failed && own {
                refunds::release(&txn, payment.id, refund.amount).await?;
            }
            reviews::resolve_for_refund(&txn, refund_id, resolution).await?;
            if let Some(review_id) = refund.review_id.filter(|_| to == RefundStatus::Failed) {
                // The money is still at the connector: its review asks again.
                reviews::reopen(&txn, review_id, &format!("its refund {refund_id} failed")).await?;
            }
            let settled = Refund {
                status: to.as_str().to_owned(),
                failure_reason: failure.map(str::to_owned),
                updated_at: chrono::Utc::now(),
                ..refund
            };
            crate::events::record_refund(&txn, &settled, &payment.client_reference, None).await?;
            let cause = format!("{}:refund_{}", source.as_str(), to.as_str());
            let to_own = own.then_some(to);
            if !self
                .record_refund_change(&txn, &mut holding, source, &cause, event_id, to_own)
                .await?
            {
                txn.rollback().await?;
                continue;
            }
            super::commit(txn).await?;
            return Ok(true);
        }
        Err(too_contended())
    }

    /// The payment's side of a settled refund: `refunded` when the
    /// succeeded refunds cover it (through the apply pipeline), otherwise
    /// an audit row. `own_to`: the refund's new status if it refunds the
    /// payment's own money (`None` for a review's refund). `false`: the
    /// payment moved on since it was read (retry).
    async fn record_refund_change(
        &self,
        txn: &DatabaseTransaction,
        holding: &mut Holding,
        source: Source,
        cause: &str,
        event_id: Option<&str>,
        own_to: Option<RefundStatus>,
    ) -> Result<bool, PaymentError> {
        let payment = holding.only().cloned().ok_or(PaymentError::NotFound)?;
        let covered = own_to == Some(RefundStatus::Succeeded)
            && refunds::succeeded_total(txn, payment.id).await? >= payment.amount;
        if covered {
            let change = Change::new(PaymentEvent::Refunded, source);
            return self.apply_in(txn, holding, change, event_id).await;
        }
        payments::record_transition(
            txn,
            payment.id,
            &payment.status,
            &payment.status,
            cause,
            event_id,
        )
        .await?;
        Ok(true)
    }

    /// Finds out what became of an unsettled refund: sends one never
    /// sent, looks up one sent (or being sent, its answer lost) and settles
    /// it as the provider says. One the provider does not find stays as it
    /// is — never failed: the claim stamped it, so the next sweep after
    /// `PAYORCH_RECONCILE_AFTER_S` looks again — until `review_after` has
    /// passed since its creation; then it goes to review.
    pub(super) async fn reconcile_refund(
        &self,
        refund_id: Uuid,
        review_after: std::time::Duration,
    ) -> Result<Refund, PaymentError> {
        let refund = self.refund(refund_id).await?;
        let status = RefundStatus::parse(&refund.status)
            .ok_or_else(|| PaymentError::Internal(format!("refund {refund_id} status")))?;
        if !RefundStatus::UNSETTLED.contains(&status) {
            return Ok(refund);
        }
        if refund.dispatch == UNSENT {
            return match self.send_refund(refund_id).await {
                Err(PaymentError::Provider(ProviderError::Rejected(_))) => {
                    self.refund(refund_id).await
                }
                other => other,
            };
        }
        let payment = self.payment_of(&refund).await?;
        let reference = Reference::parse(&payment.reference).map_err(corrupt)?;
        let found = self
            .refund_connector(&payment, &refund)?
            .find_refund(&reference, refund_id, refund.provider_refund_id.as_deref())
            .await?;
        let Some(found) = found else {
            let waited = (chrono::Utc::now() - refund.created_at)
                .to_std()
                .unwrap_or_default();
            return match review::unfound_refund(waited, review_after) {
                UnfoundRefund::LookAgain => {
                    tracing::warn!(%refund_id, dispatch = refund.dispatch, "the provider does not find the refund yet; looking again later");
                    Ok(refund)
                }
                UnfoundRefund::Review if status == RefundStatus::RequiresReview => Ok(refund),
                UnfoundRefund::Review => {
                    self.refund_outcome_unknown(&payment, refund, waited).await
                }
            };
        };
        if refund.dispatch == SENDING {
            refunds::mark_dispatch(
                &self.db,
                refund_id,
                SENDING,
                SENT,
                Some(&found.provider_refund_id),
            )
            .await?;
        }
        self.settle_refund(
            &payment.reference,
            refund_id,
            found.report,
            Source::Reconcile,
        )
        .await
    }

    async fn refund(&self, refund_id: Uuid) -> Result<Refund, PaymentError> {
        refunds::find(&self.db, refund_id)
            .await?
            .ok_or(PaymentError::NotFound)
    }

    async fn payment_of(&self, refund: &Refund) -> Result<Payment, PaymentError> {
        payments::find_by_id(&self.db, refund.payment_id)
            .await?
            .ok_or_else(|| PaymentError::Internal(format!("refund {} has no payment", refund.id)))
    }
}

impl Payments {
    /// Refunds `client_id`'s payment `reference` (all that is left, or
    /// `request.amount`): the refund is created pending and its amount
    /// promised in one transaction — with its Idempotency-Key, as for
    /// initialize — then sent to the provider through the payment's actor.
    /// A provider that does not answer leaves it pending for
    /// reconciliation (still a 201); one that refuses fails it.
    pub async fn refund(
        &self,
        client_id: Uuid,
        reference: &str,
        idempotent: Option<Idempotent>,
        request: Result<NewRefundRequest, Vec<FieldError>>,
        render: impl Fn(Result<Refund, PaymentError>) -> Rendered + Send,
    ) -> Result<Answer, PaymentError> {
        let Some(idempotent) = idempotent else {
            let request = request.map_err(PaymentError::Invalid)?;
            let txn = crate::store::begin_write(&self.db).await?;
            let (refund, at_provider) = create(&txn, client_id, reference, &request).await?;
            commit(txn).await?;
            let refund = self.send_refund(&at_provider, refund.id).await?;
            return Ok(Answer::Fresh(render(Ok(refund))));
        };
        let txn = crate::store::begin_write(&self.db).await?;
        let (claim, earlier_refund) =
            match self.claim_key(&txn, client_id, &idempotent, None).await? {
                Reservation::Replay(stored) => return Ok(Answer::Replayed(stored)),
                Reservation::Proceed {
                    claim, refund_id, ..
                } => (claim, refund_id),
            };
        let (refund_id, at_provider) = match (earlier_refund, request) {
            // An earlier attempt created it: finish that one (it is sent at
            // most once whatever happens here).
            (Some(refund_id), _) => {
                let payment = payments::find_owned(&txn, client_id, reference)
                    .await?
                    .ok_or(PaymentError::NotFound)?;
                (refund_id, payment.reference)
            }
            (None, request) => {
                let created = match request {
                    Ok(request) => create(&txn, client_id, reference, &request).await,
                    Err(errors) => Err(PaymentError::Invalid(errors)),
                };
                match created {
                    Ok((refund, at_provider)) => {
                        idempotency::attach_refund(&txn, &claim, refund.id).await?;
                        (refund.id, at_provider)
                    }
                    Err(err) if err.is_final() => {
                        return self.refuse(txn, client_id, &idempotent, err, &render).await;
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        commit(txn).await?;
        let result = self.send_refund(&at_provider, refund_id).await;
        self.store_outcome(&claim, result, render).await
    }

    /// `client_id`'s refunds of its payment `reference`, oldest first.
    pub async fn refunds(
        &self,
        client_id: Uuid,
        reference: &str,
    ) -> Result<Vec<Refund>, PaymentError> {
        list(&self.db, client_id, reference).await
    }

    /// Settles the refund a provider's refund webhook names, exactly once
    /// per event. `false`: a duplicate, or a refund payorch did not make.
    pub async fn apply_refund_webhook(
        &self,
        record: WebhookRecord,
        notice: RefundNotice,
        report: RefundReport,
    ) -> Result<bool, PaymentError> {
        self.registry
            .apply_refund_webhook(record, notice, report)
            .await
    }

    pub(super) async fn send_refund(
        &self,
        reference: &str,
        refund_id: Uuid,
    ) -> Result<Refund, PaymentError> {
        self.registry.send_refund(reference, refund_id).await
    }
}

/// A client's refunds of its payment `reference`, oldest first.
pub(super) async fn list(
    db: &impl ConnectionTrait,
    client_id: Uuid,
    reference: &str,
) -> Result<Vec<Refund>, PaymentError> {
    let payment = payments::find_owned(db, client_id, reference)
        .await?
        .ok_or(PaymentError::NotFound)?;
    Ok(refunds::for_payment(db, payment.id).await?)
}
