//! The checkout page a person sees: the amount, Pay and Decline, the same in
//! both dialects. The form posts `outcome=success` or `outcome=failed` (a
//! contract) to the same path; then the customer goes back to the
//! merchant's URL as the provider sends them: Paystack's `callback_url` with
//! `?trxref=<reference>&reference=<reference>`, Flutterwave's `redirect_url`
//! with `?status=successful|failed&tx_ref=<reference>&transaction_id=<id>`
//! (the attempt's id).
//!
//! In the Flutterwave dialect a Decline is one declined attempt and the
//! checkout stays payable: the page offers Pay and Decline again.

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Form, Html, Path, Redirect},
};
use serde::Deserialize;

use super::{
    Sandbox,
    state::{AfterDecline, Transaction},
};
use crate::{domain::Currency, provider::routing::ConnectorName};

#[handler]
pub async fn page(Data(sandbox): Data<&Sandbox>, Path(access_code): Path<String>) -> Response {
    let tx = {
        let state = sandbox.lock();
        state
            .by_access_code
            .get(&access_code)
            .and_then(|reference| state.transactions.get(reference))
            .cloned()
    };
    let Some(tx) = tx else {
        return (
            StatusCode::NOT_FOUND,
            Html(shell(
                "Unknown checkout",
                "<p>This checkout link is not valid.</p>",
            )),
        )
            .into_response();
    };
    let amount = display_amount(tx.amount, &tx.currency);
    let body = if tx.status == "ongoing" {
        let retry = if tx.latest_attempt().is_some() {
            "<p>Your last attempt was declined. You may try again.</p>\n"
        } else {
            ""
        };
        format!(
            r#"{retry}<p class="amount">{amount}</p>
<p>{email}<br><small>Reference {reference}</small></p>
<form method="post"><input type="hidden" name="outcome" value="success"><button class="pay" type="submit">Pay {amount}</button></form>
<form method="post"><input type="hidden" name="outcome" value="failed"><button class="decline" type="submit">Decline</button></form>"#,
            email = escape(&tx.email),
            reference = escape(&tx.reference),
        )
    } else {
        format!(
            "<p class=\"amount\">{amount}</p><p>This payment is already <b>{}</b>.</p>",
            escape(sandbox.status_word(&tx))
        )
    };
    Html(shell("Sandbox checkout", &body)).into_response()
}

#[derive(Deserialize)]
pub struct Decision {
    outcome: String,
}

#[handler]
pub async fn submit(
    Data(sandbox): Data<&Sandbox>,
    Path(access_code): Path<String>,
    Form(decision): Form<Decision>,
) -> Response {
    if !matches!(decision.outcome.as_str(), "success" | "failed") {
        return (
            StatusCode::BAD_REQUEST,
            Html(shell(
                "Checkout",
                "<p>outcome must be success or failed</p>",
            )),
        )
            .into_response();
    }
    let reference = sandbox.lock().by_access_code.get(&access_code).cloned();
    let settled =
        reference.and_then(|r| sandbox.settle(&r, &decision.outcome, AfterDecline::KeepOpen));
    let Some(tx) = settled else {
        return (
            StatusCode::NOT_FOUND,
            Html(shell(
                "Unknown checkout",
                "<p>This checkout link is not valid.</p>",
            )),
        )
            .into_response();
    };
    if let Some(back) = back_to_merchant(sandbox, &tx) {
        return Redirect::see_other(back).into_response();
    }
    let verdict = if tx.status == "success" {
        "Payment approved"
    } else {
        "Payment declined"
    };
    Html(shell(
        verdict,
        &format!(
            "<p class=\"amount\">{}</p><p>{verdict}. You may close this page.</p>",
            display_amount(tx.amount, &tx.currency)
        ),
    ))
    .into_response()
}

/// Where the customer goes once they decided, with what the provider adds.
fn back_to_merchant(sandbox: &Sandbox, tx: &Transaction) -> Option<reqwest::Url> {
    let mut back = reqwest::Url::parse(tx.callback_url.as_deref()?).ok()?;
    match sandbox.inner.dialect {
        ConnectorName::Paystack => {
            back.query_pairs_mut()
                .append_pair("trxref", &tx.reference)
                .append_pair("reference", &tx.reference);
        }
        ConnectorName::Flutterwave => {
            back.query_pairs_mut()
                .append_pair("status", sandbox.status_word(tx))
                .append_pair("tx_ref", &tx.reference)
                .append_pair("transaction_id", &tx.current_id().to_string());
        }
    }
    Some(back)
}

/// `150075` NGN → `NGN 1,500.75`; a currency payorch does not know shows
/// minor units.
fn display_amount(minor: i64, currency: &str) -> String {
    match Currency::parse(currency).map(|c| c.minor_unit_exponent()) {
        Ok(0) => format!("{currency} {}", grouped(minor)),
        Ok(exp) => {
            let unit = 10i64.pow(exp);
            format!(
                "{currency} {}.{:0width$}",
                grouped(minor / unit),
                minor % unit,
                width = exp as usize
            )
        }
        Err(_) => format!("{currency} {minor} (minor units)"),
    }
}

/// `1500` → `1,500`.
fn grouped(major: i64) -> String {
    let digits = major.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn shell(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · payorch sandbox</title>
<style>
body{{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;padding:3rem 1rem}}
main{{background:#fff;border-radius:12px;box-shadow:0 2px 12px #0002;padding:2rem;max-width:22rem;width:100%;text-align:center}}
.amount{{font-size:2rem;font-weight:600;margin:.5rem 0}}
button{{width:100%;padding:.8rem;margin-top:.6rem;border:0;border-radius:8px;font-size:1rem;cursor:pointer}}
.pay{{background:#0a7d4f;color:#fff}} .decline{{background:#e9ecef;color:#333}}
small{{color:#666}} .badge{{font-size:.75rem;color:#a15c00}}
</style></head>
<body><main><div class="badge">SANDBOX — no real money moves</div><h1>{title}</h1>{body}</main></body></html>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_display_with_the_currency_exponent() {
        assert_eq!(display_amount(150075, "NGN"), "NGN 1,500.75");
        assert_eq!(display_amount(5, "USD"), "USD 0.05");
        assert_eq!(display_amount(5000, "XOF"), "XOF 5,000");
        assert_eq!(display_amount(12_345_678_900, "NGN"), "NGN 123,456,789.00");
        assert_eq!(display_amount(999, "XOF"), "XOF 999");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
