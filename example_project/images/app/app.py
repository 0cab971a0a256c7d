"""sms-checker-app: the web front of the SMS spam checker.

Serves a small page (`GET /`), the API the page calls (`POST /sms` with `{"sms": "..."}`),
which asks the model service (`POST $MODEL_URL/predict`) for a verdict, and the two
endpoints the chart relies on: `GET /healthz` for the probes and `GET /metrics` (Prometheus
text format) for the ServiceMonitor. Standard library only, so the image needs no packages.

Environment (the chart's ConfigMap): PORT (8080), MODEL_URL, MODEL_TIMEOUT_SECONDS (5),
LOG_LEVEL (INFO), METRICS_PATH (/metrics).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("sms-checker-app")

# Upper bounds (seconds) of the model-latency histogram buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_BODY_BYTES = 64 * 1024

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SMS checker</title></head>
<body>
<h1>Is this SMS spam?</h1>
<form id="f"><textarea name="sms" rows="4" cols="60"></textarea><br><button>Check</button></form>
<p id="result"></p>
<script>
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const sms = new FormData(e.target).get("sms");
  const r = await fetch("/sms", {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify({sms})});
  const body = await r.json();
  document.getElementById("result").textContent = r.ok ? body.result : body.error;
};
</script>
</body></html>
"""


class Metrics:
    """The app's counters and its model-latency histogram; safe to update from any thread."""

    def __init__(self, version: str) -> None:
        self.version = version
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.verdicts: dict[str, int] = {}
        self.model_errors: dict[str, int] = {}
        self.latency_counts = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def request(self, method: str, path: str, code: int) -> None:
        with self._lock:
            key = (method, path, code)
            self.requests[key] = self.requests.get(key, 0) + 1

    def verdict(self, result: str) -> None:
        with self._lock:
            self.verdicts[result] = self.verdicts.get(result, 0) + 1

    def model_error(self, reason: str) -> None:
        with self._lock:
            self.model_errors[reason] = self.model_errors.get(reason, 0) + 1

    def model_latency(self, seconds: float) -> None:
        with self._lock:
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.latency_counts[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines = [
                "# HELP sms_checker_build_info The running version of sms-checker-app.",
                "# TYPE sms_checker_build_info gauge",
                f'sms_checker_build_info{{version="{_escape(self.version)}"}} 1',
                "# HELP sms_checker_http_requests_total HTTP requests served, by method, path and status code.",
                "# TYPE sms_checker_http_requests_total counter",
            ]
            for (method, path, code), n in sorted(self.requests.items()):
                lines.append(
                    f'sms_checker_http_requests_total{{method="{method}",path="{_escape(path)}",'
                    f'code="{code}"}} {n}'
                )
            lines += [
                "# HELP sms_checker_predictions_total Messages classified, by verdict.",
                "# TYPE sms_checker_predictions_total counter",
            ]
            for result, n in sorted(self.verdicts.items()):
                lines.append(f'sms_checker_predictions_total{{result="{_escape(result)}"}} {n}')
            lines += [
                "# HELP sms_checker_model_errors_total Calls to the model service that failed, by reason.",
                "# TYPE sms_checker_model_errors_total counter",
            ]
            for reason, n in sorted(self.model_errors.items()):
                lines.append(f'sms_checker_model_errors_total{{reason="{_escape(reason)}"}} {n}')
            lines += [
                "# HELP sms_checker_model_request_seconds Latency of calls to the model service.",
                "# TYPE sms_checker_model_request_seconds histogram",
            ]
            for bound, n in zip(LATENCY_BUCKETS, self.latency_counts, strict=True):
                lines.append(f'sms_checker_model_request_seconds_bucket{{le="{bound}"}} {n}')
            lines += [
                f'sms_checker_model_request_seconds_bucket{{le="+Inf"}} {self.latency_count}',
                f"sms_checker_model_request_seconds_sum {self.latency_sum:.6f}",
                f"sms_checker_model_request_seconds_count {self.latency_count}",
            ]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ModelUnavailable(Exception):
    """The model service did not answer in time, or answered with an error."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ModelClient:
    """POST /predict on the model service, with the configured timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/predict"
        self.timeout = timeout

    def predict(self, sms: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"sms": sms}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: dict[str, Any] = json.load(response)
                return body
        except TimeoutError as e:
            raise ModelUnavailable("timeout", f"no answer within {self.timeout:g} s") from e
        except urllib.error.HTTPError as e:
            raise ModelUnavailable("status", f"the model service answered {e.code}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ModelUnavailable("unreachable", f"cannot reach {self.url}: {e}") from e


class Settings:
    def __init__(self, environ: dict[str, str]) -> None:
        self.port = int(environ.get("PORT", "8080"))
        self.model_url = environ.get("MODEL_URL", "http://localhost:8081")
        self.model_timeout = float(environ.get("MODEL_TIMEOUT_SECONDS", "5"))
        self.log_level = environ.get("LOG_LEVEL", "INFO").upper()
        self.metrics_path = environ.get("METRICS_PATH", "/metrics")
        self.version = environ.get("APP_VERSION", "1.0.0")


def make_handler(
    settings: Settings, metrics: Metrics, model: ModelClient
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sms-checker-app"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            metrics.request(self.command, self.path.split("?", 1)[0], code)

        def _json(self, code: int, payload: dict[str, Any]) -> None:
            self._send(code, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == settings.metrics_path:
                self._send(
                    200, metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
                )
            elif path == "/":
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            else:
                self._json(404, {"error": f"no such page: {path}"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/sms":
                self._json(404, {"error": f"no such endpoint: {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._json(413, {"error": f"at most {MAX_BODY_BYTES} bytes"})
                return
            try:
                sms = json.loads(self.rfile.read(length) or b"{}").get("sms")
            except (ValueError, AttributeError):
                sms = None
            if not isinstance(sms, str) or not sms.strip():
                self._json(400, {"error": 'send {"sms": "<the message>"}'})
                return
            started = time.perf_counter()
            try:
                answer = model.predict(sms)
            except ModelUnavailable as e:
                metrics.model_error(e.reason)
                log.warning("model call failed: %s", e)
                self._json(503, {"error": f"the model service is unavailable: {e}"})
                return
            finally:
                metrics.model_latency(time.perf_counter() - started)
            result = str(answer.get("result", "unknown"))
            metrics.verdict(result)
            self._json(200, {"sms": sms, "result": result, "score": answer.get("score")})

    return Handler


def main() -> None:
    settings = Settings(dict(os.environ))
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    metrics = Metrics(settings.version)
    model = ModelClient(settings.model_url, settings.model_timeout)
    server = ThreadingHTTPServer(("", settings.port), make_handler(settings, metrics, model))
    # Kubernetes stops a pod with SIGTERM: finish the requests in flight, then exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("listening on :%d, model at %s", settings.port, settings.model_url)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
