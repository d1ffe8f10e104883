//! The OpenAPI document as served: poem-openapi's, completed with what its
//! derive cannot say.
//!
//! - The rules `requests.rs` and `operator.rs` apply, as schema only:
//!   declared as poem validators they would make poem answer a wrong value
//!   with its own 400, instead of the documented 422 that lists every wrong
//!   field at once.
//! - Links from a created payment, refund or webhook endpoint to the
//!   operations on it, so a client generator (and schemathesis' stateful
//!   tests) can follow them.

use serde_json::{Value, json};

use super::{
    operator::{MAX_NOTE, MAX_PAGE},
    requests::{MAX_CALLBACK_URL, MAX_REFUND_REASON},
};
use crate::{
    domain::{Amount, Currency, Email, Reference, ReviewAction, ReviewKind},
    events::{EVENT_TYPES, MAX_DESCRIPTION, ssrf},
    provider::routing::ConnectorName,
};

/// `spec`, poem-openapi's JSON document, completed.
pub fn complete(spec: &str) -> String {
    let mut doc: Value = serde_json::from_str(spec).expect("poem-openapi writes JSON");
    constrain(&mut doc);
    link(&mut doc);
    serde_json::to_string(&doc).expect("a JSON value serializes")
}

/// A UUID in hyphenated form, as `IdempotencyKey::parse` takes it.
const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A host name label.
const LABEL: &str = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

fn constrain(doc: &mut Value) {
    let currencies: Vec<&str> = Currency::ALL.iter().map(|c| c.as_str()).collect();
    let connectors: Vec<&str> = ConnectorName::ALL.iter().map(|c| c.as_str()).collect();
    let initialize = "/components/schemas/InitializeBody/properties";
    let refund = "/components/schemas/RefundBody/properties";
    let endpoint = "/components/schemas/CreateEndpointBody/properties";
    let update = "/components/schemas/UpdateEndpointBody/properties";
    let resolve = "/components/schemas/ResolveBody/properties";
    let actions: Vec<&str> = ReviewAction::OPERATOR.iter().map(|a| a.as_str()).collect();
    for (field, rules) in [
        (
            format!("{initialize}/amount"),
            json!({"minimum": 1, "maximum": Amount::MAX}),
        ),
        (
            format!("{initialize}/currency"),
            json!({"enum": currencies}),
        ),
        (
            format!("{initialize}/email"),
            // What `Email::parse` takes, in printable ASCII.
            json!({
                "pattern": format!("^[!-?A-~]{{1,{}}}@{LABEL}(\\.{LABEL})+$", Email::MAX_LOCAL_LEN),
                "maxLength": Email::MAX_LEN,
            }),
        ),
        (
            format!("{initialize}/reference"),
            json!({
                "pattern": format!("^[A-Za-z0-9][A-Za-z0-9.=-]{{0,{}}}$", Reference::MAX_LEN - 1),
                "maxLength": Reference::MAX_LEN,
            }),
        ),
        (
            format!("{initialize}/callback_url"),
            json!({
                "pattern": format!("^https?://{LABEL}(\\.{LABEL})*(:[0-9]{{1,4}})?(/[A-Za-z0-9._~%-]*)*$"),
                "maxLength": MAX_CALLBACK_URL,
            }),
        ),
        (format!("{initialize}/metadata"), json!({"type": "object"})),
        (
            format!("{initialize}/provider"),
            json!({"enum": connectors}),
        ),
        (
            format!("{refund}/amount"),
            json!({"minimum": 1, "maximum": Amount::MAX}),
        ),
        (
            format!("{refund}/reason"),
            json!({"maxLength": MAX_REFUND_REASON}),
        ),
        (
            format!("{endpoint}/url"),
            json!({"maxLength": ssrf::MAX_URL_LEN, "pattern": "^https?://"}),
        ),
        (
            format!("{endpoint}/description"),
            json!({"maxLength": MAX_DESCRIPTION}),
        ),
        (
            format!("{endpoint}/event_types/items"),
            json!({"enum": EVENT_TYPES}),
        ),
        (
            format!("{update}/url"),
            json!({"maxLength": ssrf::MAX_URL_LEN, "pattern": "^https?://"}),
        ),
        (
            format!("{update}/description"),
            json!({"maxLength": MAX_DESCRIPTION}),
        ),
        (
            format!("{update}/event_types/items"),
            json!({"enum": EVENT_TYPES}),
        ),
        (format!("{resolve}/action"), json!({"enum": actions})),
        (format!("{resolve}/note"), json!({"maxLength": MAX_NOTE})),
    ] {
        match doc.pointer_mut(&field) {
            Some(schema) => merge(schema, rules),
            None => tracing::warn!(field, "OpenAPI document: no such schema to constrain"),
        }
    }

    let kinds: Vec<&str> = ReviewKind::ALL.iter().map(|k| k.as_str()).collect();
    for (path, parameter, rules) in [
        (
            "/v1/operator/reviews",
            "limit",
            json!({"minimum": 1, "maximum": MAX_PAGE}),
        ),
        ("/v1/operator/reviews", "kind", json!({"enum": kinds})),
        (
            "/v1/operator/audit",
            "limit",
            json!({"minimum": 1, "maximum": MAX_PAGE}),
        ),
    ] {
        let schema = doc["paths"][path]["get"]["parameters"]
            .as_array_mut()
            .and_then(|all| all.iter_mut().find(|p| p["name"] == parameter))
            .map(|p| &mut p["schema"]);
        match schema {
            Some(schema) => merge(schema, rules),
            None => tracing::warn!(path, parameter, "OpenAPI document: no such parameter"),
        }
    }

    if let Some(paths) = doc["paths"].as_object_mut() {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for (_, op) in operation.iter_mut() {
                let Some(parameters) = op.get_mut("parameters").and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for parameter in parameters {
                    if parameter["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("idempotency-key"))
                    {
                        merge(
                            &mut parameter["schema"],
                            json!({"format": "uuid", "pattern": UUID}),
                        );
                    }
                }
            }
        }
    }
}

fn link(doc: &mut Value) {
    let operation = |path: &str, method: &str| {
        format!(
            "#/paths/{}/{method}",
            path.replace('~', "~0").replace('/', "~1")
        )
    };
    let on_payment = |field: &str| {
        let parameters = json!({"reference": format!("$response.body#/{field}")});
        json!({
            "GetPayment": {"operationRef": operation("/v1/payments/{reference}", "get"), "parameters": parameters},
            "VerifyPayment": {"operationRef": operation("/v1/payments/{reference}/verify", "post"), "parameters": parameters},
            "ListRefunds": {"operationRef": operation("/v1/payments/{reference}/refunds", "get"), "parameters": parameters},
            "CreateRefund": {"operationRef": operation("/v1/payments/{reference}/refunds", "post"), "parameters": parameters},
        })
    };
    let on_endpoint = {
        let parameters = json!({"id": "$response.body#/id"});
        json!({
            "GetEndpoint": {"operationRef": operation("/v1/webhook-endpoints/{id}", "get"), "parameters": parameters},
            "UpdateEndpoint": {"operationRef": operation("/v1/webhook-endpoints/{id}", "patch"), "parameters": parameters},
            "RotateSecret": {"operationRef": operation("/v1/webhook-endpoints/{id}/rotate-secret", "post"), "parameters": parameters},
            "DeleteEndpoint": {"operationRef": operation("/v1/webhook-endpoints/{id}", "delete"), "parameters": parameters},
        })
    };
    if let Some(Value::Object(created)) =
        doc.pointer_mut("/paths/~1v1~1webhook-endpoints/post/responses/201")
    {
        created.insert("links".into(), on_endpoint);
    }
    for (path, field) in [
        ("/v1/payments/initialize", "reference"),
        ("/v1/payments/{reference}/refunds", "payment_reference"),
    ] {
        let pointer = format!(
            "/paths/{}/post/responses/201",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(Value::Object(created)) = doc.pointer_mut(&pointer) {
            created.insert("links".into(), on_payment(field));
        }
    }
}

/// Adds `extra`'s keys to the object `schema`.
fn merge(schema: &mut Value, extra: Value) {
    if let (Some(schema), Value::Object(extra)) = (schema.as_object_mut(), extra) {
        schema.extend(extra);
    }
}
