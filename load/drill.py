"""make drill: restart Redis, RabbitMQ and PostgreSQL one at a time under a
moderate load, and report per phase what clients and providers saw.

Run by scripts/drill.sh, which starts payorch and its workers. It stops and
starts the machine's own services: run it on a development machine, not
while the test suite runs.
"""

import collections
import hashlib
import hmac
import json
import os
import random
import subprocess
import threading
import time
import urllib.request

BASE = os.environ["PAYORCH_BASE"]
KEYS = os.environ["PAYORCH_LOAD_KEYS"].split(",")
SECRET = os.environ.get("PAYSTACK_SECRET_KEY", "sk_test_payorch_sandbox").encode()
PHASE_SECONDS = float(os.environ.get("PHASE_SECONDS", "8"))

phase = "warm-up"
stats = collections.defaultdict(collections.Counter)
acked_events = set()
references = []
lock = threading.Lock()
running = True


def call(method, path, body=None, headers=None, timeout=10):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), time.monotonic() - started
    except urllib.error.HTTPError as err:
        return err.code, err.read(), time.monotonic() - started
    except Exception:  # connection refused, timeout
        return 0, b"", time.monotonic() - started


def record(kind, status, took):
    with lock:
        counter = stats[phase]
        counter[f"{kind}:total"] += 1
        if status >= 500 or status == 0:
            counter[f"{kind}:5xx"] += 1
        counter[f"{kind}:max_ms"] = max(counter[f"{kind}:max_ms"], int(took * 1000))


def client_loop(key):
    auth = {"Authorization": f"Bearer {key}"}
    while running:
        status, body, took = call("POST", "/v1/payments/initialize",
                                  {"amount": 10_000, "currency": "NGN", "email": "d@example.com"}, auth)
        record("api", status, took)
        if status == 201:
            with lock:
                references.append(json.loads(body)["reference"])
        with lock:
            reference = random.choice(references) if references else None
        if reference:
            status, _, took = call("GET", f"/v1/payments/{reference}", headers=auth)
            record("api", status, took)
        time.sleep(0.05)


def provider_loop():
    next_id = 10**8
    while running:
        with lock:
            reference = random.choice(references) if references else None
        if reference:
            next_id += 1
            raw = json.dumps({"event": "charge.success",
                              "data": {"id": next_id, "reference": reference, "amount": 10_000,
                                       "currency": "NGN", "status": "success"}}).encode()
            signature = hmac.new(SECRET, raw, hashlib.sha512).hexdigest()
            status, _, took = call("POST", "/v1/webhooks/sandbox", raw, {"x-paystack-signature": signature})
            record("webhook", status, took)
            if status == 200:
                with lock:
                    acked_events.add(f"charge.success:{next_id}")
        time.sleep(0.02)


def sh(command):
    subprocess.run(command, shell=True, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


RESTARTS = {
    "redis restart": ("redis-cli shutdown nosave",
                      "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
                      "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"),
    "rabbitmq restart": ("rabbitmqctl stop_app", "rabbitmqctl start_app"),
    "postgres stop/start": ("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main stop -m fast",
                            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main start"),
}


def main():
    global phase, running
    threads = [threading.Thread(target=client_loop, args=(KEYS[i % len(KEYS)],), daemon=True) for i in range(8)]
    threads.append(threading.Thread(target=provider_loop, daemon=True))
    for thread in threads:
        thread.start()
    time.sleep(PHASE_SECONDS)
    for name, (stop, start) in RESTARTS.items():
        phase = name
        sh(stop)
        time.sleep(PHASE_SECONDS / 2)
        sh(start)
        time.sleep(PHASE_SECONDS / 2)
        phase = f"after {name}"
        time.sleep(PHASE_SECONDS)
    running = False
    for thread in threads:
        thread.join(timeout=15)
    print(f"{'phase':28} {'api req':>8} {'api 5xx':>8} {'api max ms':>10} {'hooks':>6} {'hooks 5xx':>9} {'hooks max ms':>12}")
    for name, counter in stats.items():
        print(f"{name:28} {counter['api:total']:>8} {counter['api:5xx']:>8} {counter['api:max_ms']:>10} "
              f"{counter['webhook:total']:>6} {counter['webhook:5xx']:>9} {counter['webhook:max_ms']:>12}")
    with open(os.environ["DRILL_ACKED"], "w") as out:
        out.write("\n".join(sorted(acked_events)))
    print(f"webhooks acknowledged (200): {len(acked_events)}")


if __name__ == "__main__":
    main()
