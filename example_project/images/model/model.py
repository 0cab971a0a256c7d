"""sms-checker-model: the classifier behind the SMS spam checker.

`POST /predict` with `{"sms": "..."}` answers `{"result": "spam" | "ham", "score": 0..1}`.
`GET /healthz` answers once the model is loaded (the readiness probe), `GET /metrics` in the
Prometheus text format. The "model" is a small keyword scorer, written to `MODEL_CACHE_DIR`
at start-up as a real service would cache a downloaded model. Standard library only.

Environment: PORT (8081), MODEL_CACHE_DIR (/models), LOG_LEVEL (INFO).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("sms-checker-model")

MAX_BODY_BYTES = 64 * 1024
MODEL_VERSION = "keywords-1"
# Word weights: positive leans spam, negative leans ham.
WEIGHTS = {
    "free": 1.6, "win": 1.5, "winner": 1.8, "prize": 1.8, "cash": 1.4, "claim": 1.5,
    "urgent": 1.2, "txt": 1.1, "call": 0.6, "reply": 0.5, "offer": 0.9, "guaranteed": 1.3,
    "credit": 0.8, "mobile": 0.5, "congratulations": 1.4, "now": 0.4, "stop": 0.7,
    "lunch": -1.2, "tonight": -0.8, "home": -0.9, "love": -1.0, "sorry": -1.1, "later": -0.9,
    "ok": -1.0, "thanks": -1.1, "meeting": -0.9, "mum": -1.2, "dinner": -1.1,
}  # fmt: skip
BIAS = -1.5
_WORD = re.compile(r"[a-z']+")


def load_model(cache_dir: Path) -> dict[str, float]:
    """The weights, from the cache when a previous start wrote them there."""
    cached = cache_dir / f"{MODEL_VERSION}.json"
    try:
        weights: dict[str, float] = json.loads(cached.read_text())
        return weights
    except (OSError, ValueError):
        pass
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(WEIGHTS))
    except OSError as e:  # a read-only or missing volume: serve from memory
        log.warning("cannot cache the model in %s: %s", cache_dir, e)
    return dict(WEIGHTS)


def classify(sms: str, weights: dict[str, float]) -> dict[str, Any]:
    """Score a message: a logistic function of the summed word weights (and of `$`, `!`)."""
    words = _WORD.findall(sms.lower())
    total = BIAS + sum(weights.get(w, 0.0) for w in words)
    total += 0.8 * min(sms.count("!"), 3) + (1.0 if "$" in sms or "£" in sms else 0.0)
    total += 1.0 if re.search(r"\b\d{5,}\b", sms) else 0.0  # short codes and phone numbers
    score = 1.0 / (1.0 + math.exp(-total))
    return {"result": "spam" if score >= 0.5 else "ham", "score": round(score, 4)}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.predictions: dict[str, int] = {}
        self.errors = 0
        self.seconds_sum = 0.0
        self.seconds_count = 0

    def prediction(self, result: str, seconds: float) -> None:
        with self._lock:
            self.predictions[result] = self.predictions.get(result, 0) + 1
            self.seconds_sum += seconds
            self.seconds_count += 1

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines = [
                "# HELP sms_model_info The loaded model.",
                "# TYPE sms_model_info gauge",
                f'sms_model_info{{version="{MODEL_VERSION}"}} 1',
                "# HELP sms_model_predictions_total Messages classified, by verdict.",
                "# TYPE sms_model_predictions_total counter",
            ]
            for result, n in sorted(self.predictions.items()):
                lines.append(f'sms_model_predictions_total{{result="{result}"}} {n}')
            lines += [
                "# HELP sms_model_bad_requests_total Requests that were not a valid message.",
                "# TYPE sms_model_bad_requests_total counter",
                f"sms_model_bad_requests_total {self.errors}",
                "# HELP sms_model_predict_seconds Time spent classifying.",
                "# TYPE sms_model_predict_seconds summary",
                f"sms_model_predict_seconds_sum {self.seconds_sum:.6f}",
                f"sms_model_predict_seconds_count {self.seconds_count}",
            ]
        return "\n".join(lines) + "\n"


def make_handler(weights: dict[str, float], metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sms-checker-model"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, payload: dict[str, Any]) -> None:
            self._send(code, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/metrics":
                self._send(
                    200, metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
                )
            else:
                self._json(404, {"error": f"no such page: {path}"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/predict":
                self._json(404, {"error": f"no such endpoint: {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                metrics.error()
                self._json(413, {"error": f"at most {MAX_BODY_BYTES} bytes"})
                return
            try:
                sms = json.loads(self.rfile.read(length) or b"{}").get("sms")
            except (ValueError, AttributeError):
                sms = None
            if not isinstance(sms, str):
                metrics.error()
                self._json(400, {"error": 'send {"sms": "<the message>"}'})
                return
            started = time.perf_counter()
            answer = classify(sms, weights)
            metrics.prediction(answer["result"], time.perf_counter() - started)
            self._json(200, answer)

    return Handler


def main() -> None:
    logging.basicConfig(
        level=getattr(logging, os.environ.get("LOG_LEVEL", "INFO").upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    port = int(os.environ.get("PORT", "8081"))
    weights = load_model(Path(os.environ.get("MODEL_CACHE_DIR", "/models")))
    server = ThreadingHTTPServer(("", port), make_handler(weights, Metrics()))
    # Kubernetes stops a pod with SIGTERM: finish the requests in flight, then exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("model %s loaded, listening on :%d", MODEL_VERSION, port)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
