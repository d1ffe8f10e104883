//! `POST /v1/payments/initialize`, `POST /v1/payments/{reference}/verify`,
//! `GET /v1/payments/{reference}`: thin handlers that parse, authorize and
//! hand the payment to its actor.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Header, param::Path, payload::Json};
use sea_orm::TransactionTrait;
use serde::Serialize;
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    auth::ClientAuth,
    problem::{ProblemJson, StoredJson},
};
use crate::{
    actors::Command,
    domain::{Amount, Currency, DomainError, Email, IdempotencyKey, Reference},
    error::{ApiError, FieldError},
    idempotency::{self, Reservation},
    payments::NewPaymentRequest,
    store::{
        api_clients::ApiClient,
        payments::{self as store, Payment, Transition},
    },
};

/// Largest accepted `metadata`, serialized.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
const MAX_CALLBACK_URL: usize = 2048;

pub struct PaymentsApi {
    pub state: AppState,
}

/// A request to take a payment.
#[derive(Debug, Object, Serialize)]
pub struct InitializeBody {
    /// Amount in the currency's minor units (kobo, cents): an integer > 0.
    pub amount: i64,
    /// ISO 4217 code: NGN, GHS, ZAR, KES, USD, EUR, GBP or XOF.
    pub currency: String,
    /// The customer's email address.
    pub email: String,
    /// Your unique reference (letters, digits, `.`, `=`, `-`; at most 100);
    /// generated when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Where the provider sends the customer after checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Your own JSON object, at most 8 KiB, returned as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// A payment as clients see it.
#[derive(Debug, Object, Serialize)]
pub struct PaymentView {
    pub id: Uuid,
    pub reference: String,
    /// created, pending, succeeded, failed, abandoned or refunded.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub email: String,
    pub provider: String,
    pub authorization_url: Option<String>,
    pub access_code: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// Why a payment failed or was flagged (e.g. `amount_mismatch`).
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The audit trail, oldest first (GET only).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<TransitionView>>,
}

#[derive(Debug, Object, Serialize)]
pub struct TransitionView {
    pub from_status: String,
    pub to_status: String,
    /// What caused it: `verify:charge_succeeded`, `webhook:charge_failed:ignored_late`…
    pub cause: String,
    pub event_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl PaymentView {
    pub fn new(payment: Payment, transitions: Option<Vec<Transition>>) -> PaymentView {
        PaymentView {
            id: payment.id,
            reference: payment.reference,
            status: payment.status,
            amount: payment.amount,
            currency: payment.currency,
            email: payment.email,
            provider: payment.provider,
            authorization_url: payment.authorization_url,
            access_code: payment.access_code,
            metadata: payment.metadata,
            failure_reason: payment.failure_reason,
            created_at: payment.created_at,
            updated_at: payment.updated_at,
            paid_at: payment.paid_at,
            transitions: transitions.map(|rows| {
                rows.into_iter()
                    .map(|t| TransitionView {
                        from_status: t.from_status,
                        to_status: t.to_status,
                        cause: t.cause,
                        event_id: t.event_id,
                        created_at: t.created_at,
                    })
                    .collect()
            }),
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payment view serializes")
    }
}

#[derive(ApiResponse)]
pub enum InitializeResponse {
    /// Created. With `Idempotent-Replayed: true`, this is the stored response
    /// of an earlier request with the same Idempotency-Key.
    #[oai(status = 201)]
    Created(
        StoredJson<PaymentView>,
        /// `true` when replayed from an earlier request with this key.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
    /// An error stored under the Idempotency-Key (a 4xx), replayed or first sent.
    StoredError(
        StatusCode,
        ProblemJson,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum PaymentResponse {
    /// The payment.
    #[oai(status = 200)]
    Ok(Json<PaymentView>),
}

#[OpenApi(prefix_path = "/v1/payments", tag = "ApiTags::Payments")]
impl PaymentsApi {
    /// Initialize a payment.
    ///
    /// Creates the payment, opens the provider transaction and returns the
    /// checkout link. Send an `Idempotency-Key` (a UUID) to retry safely:
    /// the same key with the same body replays the first response.
    #[oai(path = "/initialize", method = "post")]
    async fn initialize(
        &self,
        auth: ClientAuth,
        /// A UUID naming this attempt; retries reuse it.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<InitializeBody>,
    ) -> Result<InitializeResponse, ApiError> {
        let client = auth.0;
        let key = idempotency_key
            .0
            .map(|raw| IdempotencyKey::parse(raw.trim()))
            .transpose()
            .map_err(|err| ApiError::BadRequest(err.to_string()))?;
        let request = validate(&body.0);
        match key {
            None => {
                let payment = self.create_and_initialize(&client, request?).await?;
                Ok(created(&PaymentView::new(payment, None).to_json(), false))
            }
            Some(key) => {
                self.initialize_idempotently(&client, key, &body.0, request)
                    .await
            }
        }
    }

    /// Verify a payment with the provider.
    ///
    /// Asks the provider for the payment's state and applies it. A payment
    /// already final is returned as it is, without asking again.
    #[oai(path = "/:reference/verify", method = "post")]
    async fn verify(
        &self,
        auth: ClientAuth,
        reference: Path<String>,
    ) -> Result<PaymentResponse, ApiError> {
        let payment = self.owned(&auth.0, &reference.0).await?;
        let payment = self
            .state
            .payments
            .call(&payment.reference, Command::Verify)
            .await?;
        Ok(PaymentResponse::Ok(Json(PaymentView::new(payment, None))))
    }

    /// Get a payment with its audit trail.
    #[oai(path = "/:reference", method = "get")]
    async fn get(
        &self,
        auth: ClientAuth,
        reference: Path<String>,
    ) -> Result<PaymentResponse, ApiError> {
        let payment = self.owned(&auth.0, &reference.0).await?;
        let transitions = store::transitions(&self.state.db, payment.id).await?;
        Ok(PaymentResponse::Ok(Json(PaymentView::new(
            payment,
            Some(transitions),
        ))))
    }
}

impl PaymentsApi {
    async fn owned(&self, client: &ApiClient, reference: &str) -> Result<Payment, ApiError> {
        store::find_owned(&self.state.db, client.id, reference)
            .await?
            .ok_or(ApiError::NotFound)
    }

    async fn create_and_initialize(
        &self,
        client: &ApiClient,
        request: NewPaymentRequest,
    ) -> Result<Payment, ApiError> {
        let service = self.state.payments.service();
        let txn = self.state.db.begin().await?;
        let payment = service.create(&txn, client.id, &request).await?;
        txn.commit().await?;
        self.initialize_at_provider(&payment.reference, request.callback_url, false)
            .await
    }

    async fn initialize_at_provider(
        &self,
        reference: &str,
        callback_url: Option<String>,
        resumed: bool,
    ) -> Result<Payment, ApiError> {
        let command = Command::Initialize {
            callback_url,
            resumed,
        };
        self.state.payments.call(reference, command).await
    }

    /// Reserve the key and create the payment in one transaction; call the
    /// provider outside it; store the answer (4xx included, 5xx not).
    async fn initialize_idempotently(
        &self,
        client: &ApiClient,
        key: IdempotencyKey,
        body: &InitializeBody,
        request: Result<NewPaymentRequest, ApiError>,
    ) -> Result<InitializeResponse, ApiError> {
        let db = &self.state.db;
        let fingerprint = idempotency::fingerprint(
            "initialize",
            &serde_json::to_value(body).expect("a request body serializes"),
        );
        let txn = db.begin().await?;
        let reservation = idempotency::reserve(
            &txn,
            client.id,
            key,
            &fingerprint,
            self.state.cfg.idempotency_lock,
        )
        .await
        .inspect_err(|err| {
            let result = match err {
                ApiError::IdempotencyInFlight => "in_flight",
                ApiError::IdempotencyKeyReused => "reused",
                _ => "error",
            };
            metrics::counter!("payorch_idempotency_total", "result" => result).increment(1);
        })?;
        let resumed = match reservation {
            Reservation::Replay { status, body } => {
                txn.commit().await?;
                metrics::counter!("payorch_idempotency_total", "result" => "replayed").increment(1);
                return Ok(replay(status, body));
            }
            Reservation::Proceed { payment_id } => payment_id,
        };
        let (reference, callback_url, resumed) = match (resumed, request) {
            (Some(payment_id), request) => {
                let payment = store::find_by_id(&txn, payment_id).await?.ok_or_else(|| {
                    ApiError::Internal("an idempotency key names a missing payment".into())
                })?;
                let callback_url = request.ok().and_then(|r| r.callback_url);
                (payment.reference, callback_url, true)
            }
            (None, Err(err)) => {
                let body = err.problem().to_json();
                idempotency::complete(&txn, client.id, key, err.status().as_u16(), &body).await?;
                txn.commit().await?;
                return Ok(stored_error(err.status(), body));
            }
            (None, Ok(request)) => {
                let service = self.state.payments.service();
                let payment = match service.create(&txn, client.id, &request).await {
                    Ok(payment) => payment,
                    Err(err) if err.status().is_client_error() => {
                        // The failed insert may have aborted the transaction:
                        // store the answer in a fresh one.
                        drop(txn);
                        let body = err.problem().to_json();
                        self.settle_key(client, key, &fingerprint, err.status().as_u16(), &body)
                            .await?;
                        return Ok(stored_error(err.status(), body));
                    }
                    Err(err) => return Err(err),
                };
                idempotency::attach_payment(&txn, client.id, key, payment.id).await?;
                (payment.reference, request.callback_url, false)
            }
        };
        txn.commit().await?;

        match self
            .initialize_at_provider(&reference, callback_url, resumed)
            .await
        {
            Ok(payment) => {
                let body = PaymentView::new(payment, None).to_json();
                idempotency::complete(db, client.id, key, 201, &body).await?;
                Ok(created(&body, false))
            }
            Err(err) if err.status().is_client_error() => {
                let body = err.problem().to_json();
                idempotency::complete(db, client.id, key, err.status().as_u16(), &body).await?;
                Ok(stored_error(err.status(), body))
            }
            Err(err) => {
                idempotency::release(db, client.id, key).await?;
                Err(err)
            }
        }
    }

    /// Stores a 4xx under a key whose reserving transaction was lost.
    async fn settle_key(
        &self,
        client: &ApiClient,
        key: IdempotencyKey,
        fingerprint: &str,
        status: u16,
        body: &str,
    ) -> Result<(), ApiError> {
        let txn = self.state.db.begin().await?;
        let reserved = idempotency::reserve(
            &txn,
            client.id,
            key,
            fingerprint,
            self.state.cfg.idempotency_lock,
        )
        .await;
        match reserved {
            Ok(Reservation::Proceed { .. }) => {
                idempotency::complete(&txn, client.id, key, status, body).await?;
            }
            // A concurrent request took the key meanwhile and will store its
            // own answer; this one is still returned to this caller.
            Ok(Reservation::Replay { .. })
            | Err(ApiError::IdempotencyInFlight | ApiError::IdempotencyKeyReused) => {}
            Err(err) => return Err(err),
        }
        txn.commit().await?;
        Ok(())
    }
}

fn created(body: &str, replayed: bool) -> InitializeResponse {
    InitializeResponse::Created(
        StoredJson::new(body.to_owned()),
        replayed.then(|| "true".into()),
    )
}

fn stored_error(status: StatusCode, body: String) -> InitializeResponse {
    InitializeResponse::StoredError(status, ProblemJson(body), None)
}

fn replay(status: u16, body: String) -> InitializeResponse {
    match status {
        201 => created(&body, true),
        status => InitializeResponse::StoredError(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ProblemJson(body),
            Some("true".into()),
        ),
    }
}

/// Parses every field into its domain type, collecting all the errors.
pub fn validate(body: &InitializeBody) -> Result<NewPaymentRequest, ApiError> {
    let mut errors = Vec::new();
    let mut check = |result: Result<(), DomainError>| {
        if let Err(err) = result {
            errors.push(FieldError {
                field: err.field().to_owned(),
                message: err.to_string(),
            });
        }
    };
    let amount = Amount::new(body.amount);
    let currency = Currency::parse(&body.currency);
    let email = Email::parse(&body.email);
    let reference = body
        .reference
        .as_deref()
        .map(Reference::parse)
        .unwrap_or_else(|| Ok(Reference::generate()));
    check(amount.as_ref().map(drop).map_err(Clone::clone));
    check(currency.as_ref().map(drop).map_err(Clone::clone));
    check(email.as_ref().map(drop).map_err(Clone::clone));
    check(reference.as_ref().map(drop).map_err(Clone::clone));
    let mut field_error = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.to_owned(),
            message: message.to_owned(),
        })
    };
    if let Some(url) = &body.callback_url {
        let valid = url.len() <= MAX_CALLBACK_URL
            && reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !valid {
            field_error(
                "callback_url",
                "must be an http(s) URL of at most 2048 characters",
            );
        }
    }
    if let Some(metadata) = &body.metadata {
        if !metadata.is_object() {
            field_error("metadata", "must be a JSON object");
        } else if metadata.to_string().len() > MAX_METADATA_BYTES {
            field_error("metadata", "must be at most 8 KiB when serialized");
        }
    }
    match (amount, currency, email, reference) {
        (Ok(amount), Ok(currency), Ok(email), Ok(reference)) if errors.is_empty() => {
            Ok(NewPaymentRequest {
                reference,
                amount,
                currency,
                email,
                callback_url: body.callback_url.clone(),
                metadata: body.metadata.clone(),
            })
        }
        _ => Err(ApiError::Validation { errors }),
    }
}
