//! Any body a provider (or an attacker with the key) could send, in either
//! connector's dialect: parsing never panics, and what parses yields an
//! action or a reason to park it, and survives the queue unchanged.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use libfuzzer_sys::fuzz_target;
use payorch::{
    config::Secret,
    provider::{PaymentProvider, flutterwave::FlutterwaveClient, paystack::PaystackClient},
    domain::webhook::{RawJson, ReceivedWebhook},
};

static CONNECTORS: LazyLock<[Box<dyn PaymentProvider>; 2]> = LazyLock::new(|| {
    let base = "http://127.0.0.1:9/".parse().unwrap();
    let key = Secret::new("sk_fuzz");
    [
        Box::new(PaystackClient::new(
            "paystack",
            base,
            key.clone(),
            Duration::from_secs(1),
        )),
        Box::new(FlutterwaveClient::new(
            "http://127.0.0.1:9/".parse().unwrap(),
            key.clone(),
            key,
            Duration::from_secs(1),
        )),
    ]
});

fuzz_target!(|body: &[u8]| {
    for connector in CONNECTORS.iter() {
        let Ok(event) = connector.parse_webhook(body) else {
            continue;
        };
        // The dedup key names the event; an event without one is refused.
        assert!(!event.dedup_key.is_empty());
        let _ = connector.webhook_action(&event);
        let received = ReceivedWebhook {
            provider: connector.name().into(),
            event,
            payload: RawJson::new(String::from_utf8_lossy(body).into_owned()),
            received_at: chrono::DateTime::UNIX_EPOCH,
            request_id: None,
        };
        // What goes on the queue comes back the same.
        let queued = serde_json::to_vec(&received).expect("a parsed webhook serializes");
        let back: ReceivedWebhook = serde_json::from_slice(&queued).expect("and deserializes");
        assert_eq!(back, received);
    }
});
