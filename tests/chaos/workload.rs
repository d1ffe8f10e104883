//! The traffic: merchants initializing payments (with and without an
//! Idempotency-Key, retrying timeouts and 5xx as a real client does, the
//! same key each time, on either serve instance), customers paying or
//! declining at the sandbox (Flutterwave customers sometimes declining
//! once and paying on the same checkout), verifies, partial and full
//! refunds. Each merchant loop draws its choices from its own RNG seeded
//! from the campaign's seed, so the workload is the same for a seed.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use crate::processes::SANDBOX_KEY;

/// How to reach payorch and the sandbox.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub serve_urls: Vec<String>,
    pub key: String,
    pub sandbox_url: String,
}

/// What the workload did, by name.
#[derive(Default, Clone)]
pub struct Tally(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl Tally {
    pub fn add(&self, what: &'static str) {
        *self.0.lock().unwrap().entry(what).or_default() += 1;
    }

    pub fn print(&self) {
        let counts = self.0.lock().unwrap();
        let line: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("workload: {}", line.join(", "));
    }
}

/// An answer from payorch, or the reason there was none.
enum Sent {
    Answer(u16, Value),
    NoAnswer,
}

impl Api {
    /// One request to serve instance `which`.
    async fn send(
        &self,
        which: usize,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Sent {
        let url = format!("{}{path}", self.serve_urls[which % self.serve_urls.len()]);
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(8));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json().await.unwrap_or(Value::Null);
                Sent::Answer(status, body)
            }
            Err(_) => Sent::NoAnswer,
        }
    }

    /// As a real client: retry a lost answer, a 5xx or a 409 (the first
    /// request still running) with the same key and body, switching
    /// instance and backing off; anything else is the answer.
    async fn call(
        &self,
        rng: &mut StdRng,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        tally: &Tally,
    ) -> Option<(u16, Value)> {
        let first = rng.random_range(0..self.serve_urls.len());
        for (which, attempt) in (first..).zip(0..8u64) {
            match self.send(which, method.clone(), path, key, body).await {
                Sent::Answer(status, body) if status < 500 && status != 409 => {
                    return Some((status, body));
                }
                Sent::Answer(status, _) if status == 409 && key.is_none() => {
                    return Some((status, Value::Null));
                }
                Sent::Answer(..) => tally.add("client retries (5xx/409)"),
                Sent::NoAnswer => tally.add("client retries (no answer)"),
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
        }
        None
    }

    async fn control(&self, path: &str, body: Value) -> u16 {
        self.http
            .post(format!("{}/_control/{path}", self.sandbox_url))
            .bearer_auth(SANDBOX_KEY)
            .json(&body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

/// What the customer does at the checkout.
#[derive(Debug, Clone, Copy)]
enum Customer {
    Pays,
    /// Pays, but the provider sends no webhook: only a verify or a sweep
    /// finds out.
    PaysQuietly,
    Declines,
    /// Flutterwave: declines one attempt, then pays on the same checkout.
    DeclinesThenPays,
    /// Walks away: the payment stays open.
    Leaves,
}

fn draw_customer(rng: &mut StdRng, flutterwave: bool) -> Customer {
    match rng.random_range(0..100) {
        0..40 => Customer::Pays,
        40..50 => Customer::PaysQuietly,
        50..65 => Customer::Declines,
        65..80 if flutterwave => Customer::DeclinesThenPays,
        65..80 => Customer::Pays,
        _ => Customer::Leaves,
    }
}

/// One merchant's loop until `stop` says so.
pub async fn merchant(
    api: Api,
    seed: u64,
    index: u64,
    stop: tokio::sync::watch::Receiver<bool>,
    tally: Tally,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(index));
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let reference = format!("chaos-{seed}-{index}-{n}");
        one_payment(&api, &mut rng, &reference, &tally).await;
    }
}

async fn one_payment(api: &Api, rng: &mut StdRng, reference: &str, tally: &Tally) {
    let amount = rng.random_range(1..2000) * 100;
    let body = json!({"amount": amount, "currency": "NGN",
                      "email": "chaos@example.com", "reference": reference});
    let key = rng
        .random_bool(0.7)
        .then(|| uuid::Uuid::from_u128(rng.random()).to_string());
    tally.add("initialize");
    let path = "/v1/payments/initialize";
    let answer = api
        .call(
            rng,
            reqwest::Method::POST,
            path,
            key.as_deref(),
            Some(&body),
            tally,
        )
        .await;
    let payment = match answer {
        Some((200 | 201, payment)) => payment,
        // Without a key, a retry of a request that did go through meets its
        // own reference: the payment is there, read it.
        Some((409 | 422, _)) => match api
            .call(
                rng,
                reqwest::Method::GET,
                &format!("/v1/payments/{reference}"),
                None,
                None,
                tally,
            )
            .await
        {
            Some((200, payment)) => payment,
            _ => return,
        },
        _ => {
            tally.add("initialize given up or refused");
            return;
        }
    };
    let (Some(provider), Some(provider_reference)) = (
        payment["provider"].as_str(),
        payment["provider_reference"].as_str(),
    ) else {
        return;
    };
    if payment["status"] != "pending" {
        return;
    }
    let at = |status: &str| json!({"status": status, "provider": provider});
    let outcome_path = format!("transactions/{provider_reference}/outcome");
    let customer = draw_customer(rng, provider == "flutterwave");
    tally.add(match customer {
        Customer::Pays => "customer pays",
        Customer::PaysQuietly => "customer pays (no webhook)",
        Customer::Declines => "customer declines",
        Customer::DeclinesThenPays => "customer declines then pays",
        Customer::Leaves => "customer leaves",
    });
    let paid = match customer {
        Customer::Pays => api.control(&outcome_path, at("success")).await == 200,
        Customer::PaysQuietly => {
            let mut quiet = at("success");
            quiet["notify"] = json!(false);
            api.control(&outcome_path, quiet).await == 200
        }
        Customer::Declines => {
            api.control(&outcome_path, at("failed")).await;
            false
        }
        Customer::DeclinesThenPays => {
            let mut once = at("failed");
            once["attempt_only"] = json!(true);
            api.control(&outcome_path, once).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
            api.control(&outcome_path, at("success")).await == 200
        }
        Customer::Leaves => false,
    };
    // A checkout at the connector the payment failed over from, if the
    // lost initialize opened one there (404 otherwise), paid by a customer
    // who found its link: money payorch must not credit, but review.
    if rng.random_bool(0.1) {
        let other = if provider == "paystack" {
            "flutterwave"
        } else {
            "paystack"
        };
        let stranded = json!({"status": "success", "provider": other});
        if api.control(&outcome_path, stranded).await == 200 {
            tally.add("stranded checkout paid");
        }
    }
    if rng.random_bool(0.3) || matches!(customer, Customer::PaysQuietly) {
        tally.add("verify");
        let verify = format!("/v1/payments/{reference}/verify");
        api.call(rng, reqwest::Method::POST, &verify, None, None, tally)
            .await;
    }
    if !paid || !rng.random_bool(0.5) {
        return;
    }
    // The merchant refunds once it sees the payment succeeded.
    let mut succeeded = false;
    for _ in 0..20 {
        let get = format!("/v1/payments/{reference}");
        if let Some((200, payment)) = api
            .call(rng, reqwest::Method::GET, &get, None, None, tally)
            .await
            && payment["status"] == "succeeded"
        {
            succeeded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !succeeded {
        return;
    }
    let parts: &[Option<i64>] = if rng.random_bool(0.5) {
        &[None]
    } else {
        &[Some(amount / 4), Some(amount / 2), None]
    };
    for part in parts.iter().take(rng.random_range(1..=parts.len())) {
        let body = match part {
            Some(amount) => json!({"amount": amount, "reason": "chaos"}),
            None => json!({"reason": "chaos"}),
        };
        let key = uuid::Uuid::from_u128(rng.random()).to_string();
        tally.add(if part.is_some() {
            "refund partial"
        } else {
            "refund the rest"
        });
        let refunds = format!("/v1/payments/{reference}/refunds");
        api.call(
            rng,
            reqwest::Method::POST,
            &refunds,
            Some(&key),
            Some(&body),
            tally,
        )
        .await;
    }
}
