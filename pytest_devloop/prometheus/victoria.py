"""VictoriaMetrics as the embedded mode's scraper: target changes apply at once.

Owns `LocalVictoriaMetrics`, a drop-in for `LocalPrometheus` (same `apply`, `url`, `http`,
`stop`) that runs Debian's `victoria-metrics` single-node server with `-promscrape.config`.
Prometheus 2.42 forwards discovered targets and reloads its scrape pools on fixed 5 s
ticks (its scrape manager clamps the reload interval to at least 5 s), so a new pod shows
up 0-5 s after it is Ready whatever the discovery. VictoriaMetrics applies a reloaded
configuration at once: here every target is written into `static_configs`, the server is
sent SIGHUP, and `apply` returns when its `vm_promscrape_config_reloads_total` counter says
the configuration is in force (or names the error that kept it out). It serves the same
`/api/v1/targets` and `/api/v1/query` the `prometheus` fixture reads (queries are
MetricsQL, a superset of PromQL for what tests ask).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import tenacity
import yaml

from pytest_devloop.prometheus.targets import (
    POOL_LABEL,
    LocalPrometheus,
    PrometheusConfigRejected,
    PrometheusHttp,
    PrometheusUnavailable,
    ScrapePlan,
    render_config,
)

__all__ = ["LocalVictoriaMetrics", "render_static_config"]

RELOAD_TIMEOUT = 10.0
_RELOADS = "vm_promscrape_config_reloads_total"
_ERRORS = "vm_promscrape_config_reload_errors_total"
_COUNTER = re.compile(r"^(vm_promscrape_config_reload[a-z_]*)(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


def render_static_config(
    plan: ScrapePlan, *, sd_dir: Path, scrape_interval: float, evaluation_interval: float
) -> str:
    """`render_config` with each job's targets inline (`static_configs`) instead of file_sd."""
    doc = yaml.safe_load(
        render_config(
            plan,
            sd_dir=sd_dir,
            scrape_interval=scrape_interval,
            evaluation_interval=evaluation_interval,
        )
    )
    by_name = {job.name: job for job in plan.jobs}
    for entry in doc.get("scrape_configs") or []:
        entry.pop("file_sd_configs", None)
        entry["static_configs"] = [
            {**group, "labels": {**group.get("labels", {}), POOL_LABEL: entry["job_name"]}}
            for group in by_name[entry["job_name"]].groups
        ]
    doc.get("global", {}).pop("evaluation_interval", None)  # no rule evaluation here
    return yaml.safe_dump(doc, sort_keys=False)


class LocalVictoriaMetrics(LocalPrometheus):
    """A `victoria-metrics` process on a free loopback port, configured from a `ScrapePlan`."""

    engine = "victoria-metrics"
    log_name = "victoria-metrics.log"
    ready_path = "/health"
    startup_poll = 0.02
    scraper_name = "devloop's embedded scraper"

    def apply(self, plan: ScrapePlan) -> None:
        """Write the configuration with the plan's targets; reload when it changed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        text = render_static_config(
            plan,
            sd_dir=self.sd_dir,
            scrape_interval=self.scrape_interval,
            evaluation_interval=self.evaluation_interval,
        )
        changed = _write(self.config_file, text)
        if self.process is None:
            self._start(plan)
        elif changed:
            self._reload(plan)
        self._plan = plan

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-promscrape.config={self.config_file}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.directory / 'data'}",
            "-retentionPeriod=1d",
            # Samples visible to queries as soon as they are stored (default: 30 s late),
            # and no cached answers between a test's queries.
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    def _rejection(self, text: str, plan: ScrapePlan) -> str:
        return _rejected(text, plan, self.config_file)

    def _counters(self) -> dict[str, float]:
        text = PrometheusHttp(self.url, timeout=2.0).request("GET", "/metrics").decode()
        return {m.group(1): float(m.group(2)) for m in _COUNTER.finditer(text)}

    def _reload(self, plan: ScrapePlan) -> None:
        assert self.process is not None
        before = self._counters()
        self.process.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            now = self._counters()
            if now.get(_ERRORS, 0) > before.get(_ERRORS, 0):
                raise PrometheusConfigRejected(_rejected(self._log(), plan, self.config_file))
            return now.get(_RELOADS, 0) > before.get(_RELOADS, 0)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(RELOAD_TIMEOUT),
            wait=tenacity.wait_fixed(0.005),
            retry=tenacity.retry_if_result(lambda done: not done),  # errors are final
        )
        try:
            retrying(reloaded)
        except tenacity.RetryError:
            raise PrometheusUnavailable(
                f"devloop's embedded scraper ({self.binary}) did not reload its configuration "
                f"within {RELOAD_TIMEOUT:g} s; see {self.directory / self.log_name}"
            ) from None
        self.reloads += 1

    def http(self) -> PrometheusHttp:
        return PrometheusHttp(
            self.url, describe=f"{self.url} (devloop's embedded scraper, VictoriaMetrics)"
        )


def _write(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def _rejected(text: str, plan: ScrapePlan, config_file: Path) -> str:
    lines = [ln for ln in text.splitlines() if "error" in ln.lower() or "fatal" in ln.lower()]
    message = " ".join(lines[-3:] or text.strip().splitlines()[-3:])[:800]
    named = [j.source for j in plan.jobs if j.name in text]
    where = "; from " + ", ".join(named) if named else ""
    return (
        f"the embedded scraper (VictoriaMetrics) rejected the configuration devloop generated "
        f"({config_file}){where}: {message}"
    )


def engine_of(binary: str) -> str:
    """`victoria-metrics` or `prometheus`, from a binary's name."""
    return "victoria-metrics" if "victoria" in Path(binary).name else "prometheus"
