//! The Flutterwave connector (API v3) over the shared `Transport`:
//! Flutterwave Standard payments (`POST /v3/payments` → a hosted `link`),
//! verification by payorch's reference (`GET
//! /v3/transactions/verify_by_reference?tx_ref=`), refunds by transaction id
//! (`POST /v3/transactions/{id}/refund`, `GET /v3/refunds/{id}`,
//! `GET /v3/refunds`), and webhooks authenticated by the `verif-hash` header.
//!
//! Amounts are decimal *major* units at Flutterwave (`1500.75` NGN), minor
//! units everywhere in payorch (`150075`): [`to_major`] and [`to_minor`]
//! ([`amounts`]) convert exactly, from integer arithmetic and decimal text, never through
//! floating point; answers are read as raw JSON text for that reason.
//!
//! `verif-hash` is a pre-shared secret that Flutterwave sends as it is (it
//! does not sign the body), so a webhook proves only that *someone who knows
//! the hash* sent it: its figures are never applied. `charge.completed`
//! becomes [`Action::Confirm`](crate::domain::webhook::Action::Confirm): the
//! worker asks [`PaymentProvider::verify_transaction`](super::PaymentProvider::verify_transaction)
//! about the transaction id the event names (`GET /v3/transactions/{id}/verify`),
//! checks that its `tx_ref` is the payment's, and applies what the API says.
//!
//! Sources: <https://developer.flutterwave.com/docs/collecting-payments/standard>,
//! <https://flutterwaveinc.mintlify.app/api-reference/transactions/verify-a-transaction-by-transaction-reference>,
//! <https://developer.flutterwave.com/docs/collecting-payments/refunds>,
//! <https://flutterwaveinc.mintlify.app/api-reference/transactions/get-all-refunds>,
//! <https://developer.flutterwave.com/v3.0.0/reference/get-all-refunds>,
//! <https://developer.flutterwave.com/docs/integration-guides/webhooks>.
//!
//! Assumptions where the documentation is silent or loose:
//! 1. Every answer is the envelope `{"status": "success" | "error",
//!    "message", "data"}`; only a 2xx with `status: "success"` and a `data`
//!    is an answer, a 400/422 (or a 2xx with `"error"`) is a refusal in
//!    `message`.
//! 2. `amount` may be sent as a JSON number with the currency's decimals
//!    (`1500.75`); we send the shortest exact form (`1500.7`, `1500`).
//!    Answers may carry it as a number or a numeric string; both are read.
//! 3. `redirect_url` is sent only when the payment has a `callback_url`
//!    (Flutterwave may refuse a payment without one: a final 400).
//!    `metadata` goes as `meta` unchanged.
//! 4. The checkout's `access_code` is the last path segment of `link`
//!    (Flutterwave has no such field), or the `tx_ref` if `link` has none.
//! 5. Initialize and refund are not repeated once the request may have left:
//!    Flutterwave documents no idempotency for either.
//! 6. Charge status words: `successful` → succeeded; `failed` → one
//!    declined attempt ([`ChargeStatus::Declined`](super::ChargeStatus::Declined)),
//!    never final: the hosted checkout stays payable under the same
//!    `tx_ref` (each Pay or Decline is an attempt with its own id, and
//!    `verify_by_reference` reports the latest), and the API does not say
//!    whether the checkout can still be paid, so the payment stays pending
//!    and the reconciliation sweep abandons it if nobody pays;
//!    `cancelled` (the customer closed the page) is treated like Paystack's
//!    `abandoned` — not final on a poll either; anything else (`pending`,
//!    …) is undecided. A verify whose
//!    `tx_ref` is not the one asked about is refused as a broken answer.
//!    Before any charge is attempted Flutterwave knows no transaction for a
//!    `tx_ref` and answers 400 "No transaction was found for this id": that
//!    is `Rejected`, which reconciliation reads as "nobody paid".
//! 7. A refund names the transaction by Flutterwave's `id`, learned with a
//!    verify first; both calls share one provider timeout. payorch's refund
//!    id travels in `comments` (the only free-text field), so the refund's
//!    `reason` is not sent. A refund is refused (`Rejected`) if the
//!    transaction's currency is not the refund's. Refund status words:
//!    `completed` (and `completed-…`, `successful`) → processed, `failed` →
//!    failed, anything else pending. The refund's id is its `id` (a number),
//!    used for `GET /v3/refunds/{id}`.
//! 8. Without a provider refund id, `find_refund` pages through
//!    `GET /v3/refunds?id={transaction id}&page=N` (20 a page) for the row
//!    whose `transaction_id` is the transaction's and whose `comment` is
//!    payorch's refund id, every page up to
//!    [`MAX_REFUND_PAGES`](super::MAX_REFUND_PAGES), each within its own
//!    timeout; a page without `meta.page_info` is followed by the next
//!    until one is empty. A search cut short fails (`Unavailable`) rather
//!    than answer "none", since "none" would fail a refund that may exist.
//!    With the provider's refund id, `GET /v3/refunds/{id}`; a refund whose
//!    `comments` name another refund is not payorch's.
//! 9. Webhooks: `{"event": "charge.completed", "data": {"id", "tx_ref",
//!    "flw_ref", "amount", "currency", "status", …}}` with the hash in
//!    `verif-hash`; `data.id` is the attempt's transaction id, confirmed with
//!    `GET /v3/transactions/{id}/verify` (a transaction reported under
//!    another `tx_ref` is not the payment's: recorded, not applied). `event.type` is tolerated and used as the event's name
//!    only when `event` is missing. Every other event (refunds, transfers) is
//!    recorded and changes nothing: its body cannot be trusted either.
//! 10. `list_transactions` reads `GET /v3/transactions?from=&to=&page=`
//!     (days, widened by one each side, then filtered exactly; see
//!     [`listing`]): one row per transaction id, so each attempt of a
//!     checkout. Listed amounts that cannot be read exactly are reported
//!     as unknown (`None`), never guessed.

//!
//! The files: [`amounts`] (exact decimal ↔ minor units), [`wire`] (the
//! API's envelope, bodies and status words), [`client`] (the API calls),
//! [`refunds`] (finding a refund), [`listing`] (the transactions of a
//! window) and [`webhook`] (the webhook dialect).

mod amounts;
mod client;
mod listing;
mod refunds;
mod webhook;
mod wire;

pub(crate) use amounts::{amount_minor, major_text};
pub use amounts::{to_major, to_minor};
pub use client::FlutterwaveClient;
pub use webhook::{HASH_HEADER, hash_matches, parse_event};
