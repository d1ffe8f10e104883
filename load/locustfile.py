"""payorch load test: 100 concurrent users against a running payorch.

API clients (many keys, so limits are exercised but not the bottleneck)
initialize payments (some retried with the same Idempotency-Key), verify and
read them; a provider user posts bursts of signed webhooks, duplicates
included. Configuration comes from the environment set by scripts/load.sh;
THINK_MIN/THINK_MAX set a merchant user's pause between requests, in seconds.
"""

import csv
import hashlib
import hmac
import json
import os
import random
import uuid

from locust import FastHttpUser, between, events, task

KEYS = [k for k in os.environ["PAYORCH_LOAD_KEYS"].split(",") if k]
SECRET = os.environ.get("PAYSTACK_SECRET_KEY", "sk_test_payorch_sandbox").encode()
REFERENCES = []  # (key index, reference) of payments created in this run
MAX_REFERENCES = 20_000
THINK = (float(os.environ.get("THINK_MIN", "0.5")), float(os.environ.get("THINK_MAX", "1.5")))
# payorch's own share of each response (Server-Timing `app`), per endpoint,
# in ms: written to $PAYORCH_LOAD_OUT/app_timing.csv when the run ends.
APP_MS = {}


@events.request.add_listener
def record_app_time(name, response, exception, **_):
    if response is None or exception is not None:
        return
    timing = response.headers.get("server-timing") or response.headers.get("Server-Timing")
    if not timing:
        return
    for part in timing.split(","):
        label, _, value = part.strip().partition(";dur=")
        if label == "app" and value:
            APP_MS.setdefault(name, []).append(float(value))


@events.quitting.add_listener
def write_app_times(**_):
    out = os.environ.get("PAYORCH_LOAD_OUT")
    if not out:
        return
    with open(os.path.join(out, "app_timing.csv"), "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["endpoint", "count", "p50_ms", "p99_ms"])
        for name, values in sorted(APP_MS.items()):
            values.sort()
            pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
            rows.writerow([name, len(values), f"{pick(0.50):.3f}", f"{pick(0.99):.3f}"])


def body(amount):
    return {"amount": amount, "currency": "NGN", "email": "load@example.com"}


class MerchantBackend(FastHttpUser):
    weight = 10
    wait_time = between(*THINK)

    def on_start(self):
        self.key_index = random.randrange(len(KEYS))
        self.auth = {"Authorization": f"Bearer {KEYS[self.key_index]}"}

    @task(3)
    def initialize(self):
        headers = dict(self.auth)
        key = None
        if random.random() < 0.5:
            key = str(uuid.uuid4())
            headers["Idempotency-Key"] = key
        payload = body(random.choice([5_000, 10_000, 150_075]))
        with self.client.post("/v1/payments/initialize", json=payload, headers=headers,
                              name="initialize", catch_response=True) as response:
            if response.status_code == 201:
                if len(REFERENCES) < MAX_REFERENCES:
                    REFERENCES.append((self.key_index, response.json()["reference"]))
                response.success()
            elif response.status_code == 429:
                response.success()  # a limit doing its job is not a failure
            else:
                response.failure(f"status {response.status_code}")
        # A client that did not see the answer retries with the same key.
        if key and random.random() < 0.3:
            with self.client.post("/v1/payments/initialize", json=payload, headers=headers,
                                  name="initialize (retry, same key)", catch_response=True) as response:
                if response.status_code in (201, 409, 429):
                    response.success()
                else:
                    response.failure(f"status {response.status_code}")

    def own_reference(self):
        mine = [r for k, r in REFERENCES[-500:] if k == self.key_index]
        return random.choice(mine) if mine else None

    @task(3)
    def verify(self):
        reference = self.own_reference()
        if reference is None:
            return
        with self.client.post(f"/v1/payments/{reference}/verify", headers=self.auth,
                              name="verify", catch_response=True) as response:
            if response.status_code in (200, 429):
                response.success()
            else:
                response.failure(f"status {response.status_code}")

    @task(4)
    def get(self):
        reference = self.own_reference()
        if reference is None:
            return
        self.client.get(f"/v1/payments/{reference}", headers=self.auth, name="get")


class PaymentProvider(FastHttpUser):
    """Bursts of charge.success events, a fifth of them duplicates."""

    weight = 1
    wait_time = between(0.5, 1.0)

    @task
    def burst(self):
        if not REFERENCES:
            return
        events = []
        for _ in range(10):
            _, reference = random.choice(REFERENCES)
            event = {"event": "charge.success",
                     "data": {"id": random.randrange(10**9), "reference": reference,
                              "amount": 10_000, "currency": "NGN", "status": "success"}}
            events.append(json.dumps(event).encode())
        events += random.sample(events, 2)
        random.shuffle(events)
        for raw in events:
            signature = hmac.new(SECRET, raw, hashlib.sha512).hexdigest()
            self.client.post("/v1/webhooks/sandbox", data=raw, name="webhook",
                             headers={"x-paystack-signature": signature,
                                      "Content-Type": "application/json"})
