//! Any body a provider (or an attacker with the key) could send: parsing
//! never panics, and what parses yields an action or a reason to park it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payorch::webhook::event::{self, ReceivedWebhook};

fuzz_target!(|body: &[u8]| {
    let Ok((event, payload)) = event::parse(body) else {
        return;
    };
    // The dedup key names the event; an event without one is refused.
    assert!(!event.dedup_key.is_empty());
    let received = ReceivedWebhook {
        provider: "paystack".into(),
        event,
        payload,
        received_at: chrono::DateTime::UNIX_EPOCH,
        request_id: None,
    };
    let _ = received.action();
    // What goes on the queue comes back the same.
    let queued = serde_json::to_vec(&received).expect("a parsed webhook serializes");
    let back: ReceivedWebhook = serde_json::from_slice(&queued).expect("and deserializes");
    assert_eq!(back, received);
});
