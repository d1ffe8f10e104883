//! Taking a payment: [`Payments::initialize`] creates it (with its
//! Idempotency-Key, in one transaction) and opens its provider transaction
//! through the payment's actor, which routes and fails over between
//! connectors ([`super::service`]).

use uuid::Uuid;

use super::{
    Answer, Completion, Idempotent, PaymentError, Payments, Rendered,
    actors::Command,
    commit,
    error::is_unique_violation,
    idempotency::{self, Reservation},
    service::Opening,
};
use crate::{
    domain::{Amount, Currency, Email, FieldError, Reference},
    provider::routing::ConnectorName,
    store::payments::{self as store, Payment},
};

/// A validated request to take a payment.
#[derive(Debug, Clone)]
pub struct NewPaymentRequest {
    pub reference: Reference,
    pub amount: Amount,
    pub currency: Currency,
    pub email: Email,
    pub callback_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// A connector pinned by the client: that one alone is tried.
    pub provider: Option<ConnectorName>,
}

impl Payments {
    /// Creates a payment for `client_id` and opens its provider transaction.
    ///
    /// `request` is the parsed body, or what was wrong with it: with a key,
    /// even a wrong request is stored and replayed. Without a key every
    /// call is a new payment. With one: the key and the payment are created
    /// in one transaction; the provider is called outside it; the answer is
    /// stored unless it is not [final](PaymentError::is_final), in which
    /// case the key is released for the client's retry, which then finishes
    /// the same payment.
    pub async fn initialize(
        &self,
        client_id: Uuid,
        idempotent: Option<Idempotent>,
        request: Result<NewPaymentRequest, Vec<FieldError>>,
        render: impl Fn(Result<Payment, PaymentError>) -> Rendered + Send + Sync + 'static,
    ) -> Result<Answer, PaymentError> {
        let request = request.and_then(|r| self.check_pin(r));
        let Some(idempotent) = idempotent else {
            let request = request.map_err(PaymentError::Invalid)?;
            let route = self.connectors.route(request.currency, request.provider);
            let payment = self.create(client_id, &request, first(&route)?).await?;
            let payment = self
                .open_at_provider(
                    Opening::Created(Box::new(payment)),
                    request.callback_url,
                    route,
                    None,
                )
                .await?;
            return Ok(Answer::Fresh(render(Ok(payment))));
        };
        let planned = Uuid::now_v7();
        let txn = crate::store::begin_write(&self.db).await?;
        let reservation = self
            .claim_key(&txn, client_id, &idempotent, Some(planned))
            .await?;
        let (claim, earlier_payment, attached) = match reservation {
            Reservation::Replay(stored) => return Ok(Answer::Replayed(stored)),
            Reservation::Proceed {
                claim,
                payment_id,
                attached,
                ..
            } => (claim, payment_id, attached),
        };
        let (opening, callback_url, route) = match (earlier_payment, request) {
            // An earlier attempt created the payment and then crashed or
            // failed with a 5xx: finish that payment, never a second one,
            // starting with the connector it was left at.
            (Some(payment_id), request) => {
                let payment = store::find_by_id(&txn, payment_id).await?.ok_or_else(|| {
                    PaymentError::Internal("an idempotency key names a missing payment".into())
                })?;
                let request = request.ok();
                let callback_url = request.as_ref().and_then(|r| r.callback_url.clone());
                // The same body (the key's fingerprint says so), unless it no
                // longer validates (a pinned connector since disabled): then
                // the payment's own currency's route.
                let route = match (request, Currency::parse(&payment.currency)) {
                    (Some(r), _) => self.connectors.route(r.currency, r.provider),
                    (None, Ok(currency)) => self.connectors.route(currency, None),
                    (None, Err(_)) => Vec::new(),
                };
                (Opening::Resumed(payment.reference), callback_url, route)
            }
            (None, request) => {
                let created = match request {
                    Ok(request) => {
                        let route = self.connectors.route(request.currency, request.provider);
                        match first(&route) {
                            Ok(connector) => {
                                insert_payment(&txn, planned, client_id, &request, connector)
                                    .await
                                    .map(|payment| (payment, request.callback_url, route))
                            }
                            Err(err) => Err(err),
                        }
                    }
                    Err(errors) => Err(PaymentError::Invalid(errors)),
                };
                match created {
                    Ok((payment, callback_url, route)) => {
                        if !attached {
                            idempotency::attach_payment(&txn, &claim, payment.id).await?;
                        }
                        (Opening::Created(Box::new(payment)), callback_url, route)
                    }
                    Err(err) if err.is_final() => {
                        return self.refuse(txn, client_id, &idempotent, err, &render).await;
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        commit(txn).await?;

        let answer = Completion::new(claim, render);
        let result = self
            .open_at_provider(opening, callback_url, route, Some(answer.clone()))
            .await;
        if let Some(rendered) = answer.answered() {
            // Stored with the checkout, in the same write.
            return Ok(Answer::Fresh(rendered));
        }
        self.store_outcome(&claim, result, |result| answer.render(result))
            .await
    }

    /// A pinned connector must be enabled.
    pub(super) fn check_pin(
        &self,
        request: NewPaymentRequest,
    ) -> Result<NewPaymentRequest, Vec<FieldError>> {
        match request.provider {
            Some(pinned) if !self.connectors.is_enabled(pinned) => Err(vec![FieldError::new(
                "provider",
                format!("`{pinned}` is not enabled here (PAYORCH_PROVIDERS)"),
            )]),
            _ => Ok(request),
        }
    }

    /// Inserts a `created` payment on its own.
    pub(super) async fn create(
        &self,
        client_id: Uuid,
        request: &NewPaymentRequest,
        connector: ConnectorName,
    ) -> Result<Payment, PaymentError> {
        let id = Uuid::now_v7();
        if self.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            // There each try is one statement, atomic alone.
            return insert_payment(&self.db, id, client_id, request, connector).await;
        }
        let txn = crate::store::begin_write(&self.db).await?;
        let payment = insert_payment(&txn, id, client_id, request, connector).await?;
        commit(txn).await?;
        Ok(payment)
    }

    /// Opens the provider transaction through the payment's actor.
    pub(super) async fn open_at_provider(
        &self,
        opening: Opening,
        callback_url: Option<String>,
        route: Vec<ConnectorName>,
        answer: Option<Completion>,
    ) -> Result<Payment, PaymentError> {
        let reference = opening.reference().to_owned();
        let command = Command::Initialize {
            opening,
            callback_url,
            route,
            answer,
        };
        self.registry.call(&reference, command).await
    }
}

/// Inserts a `created` payment (and its first audit row) in `txn`. No
/// look-before-insert: the unique indexes decide, one statement each try.
/// It is opened at the provider under the client's own reference, unless
/// another client's payment holds that one: then under a generated one.
async fn insert_payment(
    txn: &impl sea_orm::ConnectionTrait,
    id: Uuid,
    client_id: Uuid,
    request: &NewPaymentRequest,
    connector: ConnectorName,
) -> Result<Payment, PaymentError> {
    let generated = Reference::generate();
    for provider_reference in [&request.reference, &generated] {
        let inserted = store::insert(
            txn,
            store::NewPayment {
                id,
                client_id,
                reference: &request.reference,
                provider_reference,
                provider: connector.as_str(),
                amount: request.amount,
                currency: request.currency,
                email: &request.email,
                metadata: request.metadata.clone(),
            },
        )
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                // This client used the reference before (or a concurrent
                // request of its own just did).
                PaymentError::ReferenceTaken
            } else {
                PaymentError::from(err)
            }
        })?;
        if let Some(payment) = inserted {
            return Ok(payment);
        }
    }
    Err(PaymentError::Internal(
        "a generated provider reference is taken".into(),
    ))
}

/// The first choice of a route (routes are never empty: the enabled
/// connectors are, and configuration checks the rules against them).
fn first(route: &[ConnectorName]) -> Result<ConnectorName, PaymentError> {
    route
        .first()
        .copied()
        .ok_or_else(|| PaymentError::Internal("no connector to route to".into()))
}
