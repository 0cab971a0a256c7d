"""Simulated Job and CronJob controllers of the embedded cluster.

Owns how a Job runs pods (parallelism, completions, Indexed mode, backoffLimit,
activeDeadlineSeconds, suspend, ttlSecondsAfterFinished) and the status Helm hooks and
kstatus wait for (`Complete`/`Failed` conditions after `SuccessCriteriaMet` or
`FailureTarget`, succeeded/failed/active/ready counts, start and completion times), and
how a CronJob creates Jobs on its schedule and trims their history.

Simplified on purpose: failed pods are retried at once (no exponential back-off), pod
failure policies and success policies are ignored, and counts come from the pods still
present (no `job-tracking` finalizer). CronJob schedules are standard five-field cron
expressions (lists, ranges, steps, names, `@hourly`-style macros, `CRON_TZ=`/`TZ=`
prefixes, `spec.timeZone`), evaluated against the store's wall clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pytest_devloop.embedded.reconcile import (
    Context,
    Controller,
    Handler,
    Key,
    condition_true,
    controller_keys,
    format_time,
    get_int,
    is_deleting,
    owner_reference,
    parse_time,
    pod_from_template,
    pod_is_active,
    pod_is_ready,
    set_condition,
)
from pytest_devloop.embedded.store import Change, clone, meta

Obj = dict[str, Any]

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
_BURST = 500


def job_finished(job: Obj) -> str | None:
    """ "Complete" or "Failed" once a Job has finished, else None."""
    for ctype in ("Complete", "Failed"):
        if condition_true(job, ctype):
            return ctype
    return None


def _index_of(pod: Obj) -> int | None:
    value = (meta(pod).get("annotations") or {}).get(COMPLETION_INDEX)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _compress(indexes: set[int]) -> str:
    """`0-2,5` form of a set of completion indexes."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


class JobController(Controller):
    """Runs a Job's pods to completion and reports the Job's progress."""

    watches = ("batch/jobs", "pods")

    def handlers(self) -> dict[str, Handler]:
        return {"job": self.reconcile}

    def observe(self, change: Change) -> None:
        if change.rt.key == "pods":
            for key in controller_keys(change, "Job", "job"):
                self.ctx.enqueue(key)
            return
        m = meta(change.new)
        self.ctx.enqueue(Key("job", str(m.get("namespace")), str(m.get("name"))))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        job = ctx.get(ctx.jobs, key.namespace, key.name)
        if job is None or is_deleting(job):
            return
        if job_finished(job):
            self._expire(job, job.get("status") or {})
            return
        spec = job.get("spec") or {}
        old = job.get("status") or {}
        pods = ctx.controlled(job, ctx.pods)
        active = [p for p in pods if pod_is_active(p)]
        done = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        failed = max(
            get_int(old.get("failed"), 0),
            sum((p.get("status") or {}).get("phase") == "Failed" for p in pods),
        )
        succeeded = max(get_int(old.get("succeeded"), 0), len(done))
        indexed = spec.get("completionMode") == "Indexed"
        completed_indexes = {i for p in done if (i := _index_of(p)) is not None}
        now = ctx.now()
        conds = list(old.get("conditions") or [])
        status: Obj = {}
        if spec.get("suspend"):
            for pod in active:
                ctx.delete(ctx.pods, key.namespace, str(meta(pod).get("name")))
            active = []
            conds = set_condition(
                conds, "Suspended", "True", "JobSuspended", "Job suspended", now=now
            )
        else:
            if condition_true(job, "Suspended"):
                conds = set_condition(
                    conds, "Suspended", "False", "JobResumed", "Job resumed", now=now
                )
            status["startTime"] = old.get("startTime") or now
            outcome = self._outcome(job, succeeded, failed, active, status["startTime"])
            if outcome is not None:
                for pod in active:
                    ctx.delete(ctx.pods, key.namespace, str(meta(pod).get("name")))
                active = []
                ctype, reason, message = outcome
                if ctype == "Failed":
                    conds = set_condition(conds, "FailureTarget", "True", reason, message, now=now)
                    conds = set_condition(conds, "Failed", "True", reason, message, now=now)
                    ctx.record(job, reason, message, warning=True, component="job-controller")
                else:
                    conds = set_condition(
                        conds, "SuccessCriteriaMet", "True", reason, message, now=now
                    )
                    conds = set_condition(conds, "Complete", "True", reason, message, now=now)
                    status["completionTime"] = now
                    ctx.record(job, "Completed", "Job completed", component="job-controller")
            else:
                active = self._scale(job, active, succeeded, completed_indexes, indexed)
        status.update(
            {
                "active": len(active),
                "ready": sum(pod_is_ready(p) for p in active),
                "succeeded": succeeded,
                "failed": failed,
                "terminating": 0,
                "uncountedTerminatedPods": {},
            }
        )
        for f in ("active", "succeeded", "failed"):
            if status[f] == 0:
                del status[f]
        if indexed and completed_indexes:
            status["completedIndexes"] = _compress(completed_indexes)
        if conds:
            status["conditions"] = conds
        ctx.update_status(ctx.jobs, job, status)
        if "completionTime" in status or any(c.get("type") == "Failed" for c in conds):
            self._expire(job, status)

    def _outcome(
        self, job: Obj, succeeded: int, failed: int, active: list[Obj], start: str
    ) -> tuple[str, str, str] | None:
        spec = job.get("spec") or {}
        if failed > get_int(spec.get("backoffLimit"), 6):
            return "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_time(start)
        if isinstance(deadline, int) and started is not None:
            remaining = started + deadline - self.ctx.wall()
            if remaining <= 0:
                return "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
            m = meta(job)
            self.ctx.enqueue_after(
                remaining, Key("job", str(m.get("namespace")), str(m.get("name")))
            )
        completions = spec.get("completions")
        if (isinstance(completions, int) and succeeded >= completions) or (
            completions is None and succeeded > 0 and not active
        ):
            return "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
        return None

    def _scale(
        self, job: Obj, active: list[Obj], succeeded: int, completed: set[int], indexed: bool
    ) -> list[Obj]:
        ctx = self.ctx
        spec = job.get("spec") or {}
        m = meta(job)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        parallelism = get_int(spec.get("parallelism"), 1)
        completions = spec.get("completions")
        if isinstance(completions, int):
            wanted = min(parallelism, completions - succeeded)
        else:
            wanted = 0 if succeeded else parallelism
        if len(active) > wanted:
            for pod in active[wanted:]:
                ctx.delete(ctx.pods, ns, str(meta(pod).get("name")))
            return active[:wanted]
        pending: list[int | None] = [None] * (wanted - len(active))
        if indexed and isinstance(completions, int):
            running = {_index_of(p) for p in active}
            pending = [i for i in range(completions) if i not in completed and i not in running]
            pending = pending[: wanted - len(active)]
        template = spec.get("template") or {}
        owner = owner_reference(ctx.jobs, job)
        for index in pending[:_BURST]:
            prefix = f"{name}-" if index is None else f"{name}-{index}-"
            extra = {} if index is None else {COMPLETION_INDEX: str(index)}
            pod = pod_from_template(
                template,
                namespace=ns,
                name=ctx.generate_name(ctx.pods, ns, prefix),
                owner=owner,
                extra_labels=extra,
                extra_annotations=extra,
                generate_name=prefix,
            )
            if index is not None:
                pod["spec"].setdefault("hostname", f"{name}-{index}")
            created = ctx.create(ctx.pods, pod)
            if created is None:
                break
            active.append(created)
            ctx.record(
                job,
                "SuccessfulCreate",
                f"Created pod: {meta(created).get('name')}",
                component="job-controller",
            )
        return active

    def _expire(self, job: Obj, status: Obj) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if not isinstance(ttl, int):
            return
        finished = parse_time(status.get("completionTime"))
        if finished is None:
            for cond in status.get("conditions") or []:
                if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
                    finished = parse_time(cond.get("lastTransitionTime"))
        if finished is None:
            return
        m = meta(job)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        remaining = finished + ttl - self.ctx.wall()
        if remaining <= 0:
            # The TTL controller deletes in the foreground: pods first, then the Job.
            self.ctx.delete(self.ctx.jobs, ns, name, propagation="Foreground")
        else:
            self.ctx.enqueue_after(remaining, Key("job", ns, name))


# -- cron ----------------------------------------------------------------------------

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    def value(token: str) -> int:
        token = token.lower()
        n = names[token] if token in names else int(token)
        if not low <= n <= high:
            raise ValueError(f"{n} out of range {low}-{high}")
        return n

    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(f"bad step in {part!r}")
        if base in ("*", "?"):
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = value(a), value(b)
        else:
            first = value(base)
            last = high if step_text else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool
    tz: dt.tzinfo

    @classmethod
    def parse(cls, text: str, time_zone: str | None = None) -> CronSchedule:
        text = text.strip()
        tz_name = time_zone
        if text.startswith(("CRON_TZ=", "TZ=")):
            prefix, _, text = text.partition(" ")
            tz_name = prefix.split("=", 1)[1]
        text = _MACROS.get(text.lower(), text)
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {text!r}")
        tz: dt.tzinfo = dt.UTC
        if tz_name and tz_name not in ("UTC", "Etc/UTC"):
            try:
                tz = ZoneInfo(tz_name)
            except (ZoneInfoNotFoundError, ValueError) as e:
                raise ValueError(f"unknown time zone {tz_name!r}") from e
        weekdays = frozenset(d % 7 for d in _cron_field(fields[4], 0, 7, _DAYS))
        return cls(
            minutes=_cron_field(fields[0], 0, 59, {}),
            hours=_cron_field(fields[1], 0, 23, {}),
            days=_cron_field(fields[2], 1, 31, {}),
            months=_cron_field(fields[3], 1, 12, _MONTHS),
            weekdays=weekdays,
            any_day=fields[2] in ("*", "?"),
            any_weekday=fields[4] in ("*", "?"),
            tz=tz,
        )

    def _day_matches(self, day: dt.date) -> bool:
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        # Cron's rule: with both day fields restricted, either may match.
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, ts: float) -> float:
        """The first scheduled time strictly after `ts` (epoch seconds)."""
        start = dt.datetime.fromtimestamp(ts, self.tz).replace(second=0, microsecond=0)
        start += dt.timedelta(minutes=1)
        day = start.date()
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for _ in range(366 * 5):
            if day.month in self.months and self._day_matches(day):
                first_day = day == start.date()
                for h in hours:
                    if first_day and h < start.hour:
                        continue
                    for mi in minutes:
                        if first_day and h == start.hour and mi < start.minute:
                            continue
                        return dt.datetime(
                            day.year, day.month, day.day, h, mi, tzinfo=self.tz
                        ).timestamp()
            day += dt.timedelta(days=1)
        raise ValueError("the schedule never fires")


class CronJobController(Controller):
    """Creates a CronJob's Jobs when due, honours its concurrency policy, trims history."""

    watches = ("batch/cronjobs", "batch/jobs")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._seen_finished: set[str] = set()

    def handlers(self) -> dict[str, Handler]:
        return {"cronjob": self.reconcile}

    def observe(self, change: Change) -> None:
        if change.rt.key == "batch/jobs":
            for key in controller_keys(change, "CronJob", "cronjob"):
                self.ctx.enqueue(key)
            if change.type == "DELETED":
                self._seen_finished.discard(str(meta(change.new).get("uid")))
            return
        m = meta(change.new)
        self.ctx.enqueue(Key("cronjob", str(m.get("namespace")), str(m.get("name"))))

    def reconcile(self, key: Key) -> None:
        ctx = self.ctx
        cj = ctx.get(ctx.cronjobs, key.namespace, key.name)
        if cj is None or is_deleting(cj):
            return
        spec = cj.get("spec") or {}
        old = cj.get("status") or {}
        jobs = sorted(
            ctx.controlled(cj, ctx.jobs), key=lambda j: str(meta(j).get("creationTimestamp"))
        )
        active = [j for j in jobs if not job_finished(j) and not is_deleting(j)]
        for job in jobs:
            uid = str(meta(job).get("uid"))
            state = job_finished(job)
            if state and uid not in self._seen_finished:
                self._seen_finished.add(uid)
                ctx.record(
                    cj,
                    "SawCompletedJob",
                    f"Saw completed job: {meta(job).get('name')}, status: {state}",
                    component="cronjob-controller",
                )
        self._trim(jobs, "Complete", get_int(spec.get("successfulJobsHistoryLimit"), 3))
        self._trim(jobs, "Failed", get_int(spec.get("failedJobsHistoryLimit"), 1))
        status: Obj = {}
        if old.get("lastScheduleTime"):
            status["lastScheduleTime"] = old["lastScheduleTime"]
        successes = [
            str((j.get("status") or {}).get("completionTime"))
            for j in jobs
            if job_finished(j) == "Complete" and (j.get("status") or {}).get("completionTime")
        ]
        if successes or old.get("lastSuccessfulTime"):
            status["lastSuccessfulTime"] = max(
                [*successes, str(old.get("lastSuccessfulTime") or "")]
            )
        if not spec.get("suspend"):
            active = self._fire(cj, active, status)
        if active:
            status["active"] = [
                {
                    "kind": "Job",
                    "namespace": key.namespace,
                    "name": meta(j).get("name"),
                    "uid": meta(j).get("uid"),
                    "apiVersion": "batch/v1",
                    "resourceVersion": meta(j).get("resourceVersion"),
                }
                for j in active
            ]
        ctx.update_status(ctx.cronjobs, cj, status)

    def _trim(self, jobs: list[Obj], state: str, keep: int) -> None:
        finished = [j for j in jobs if job_finished(j) == state and not is_deleting(j)]
        for job in finished[: max(len(finished) - keep, 0)]:
            m = meta(job)
            self.ctx.delete(
                self.ctx.jobs, str(m.get("namespace")), str(m.get("name")), "Background"
            )

    def _fire(self, cj: Obj, active: list[Obj], status: Obj) -> list[Obj]:
        ctx = self.ctx
        spec = cj.get("spec") or {}
        m = meta(cj)
        ns, name = str(m.get("namespace")), str(m.get("name"))
        try:
            schedule = CronSchedule.parse(str(spec.get("schedule", "")), spec.get("timeZone"))
        except ValueError as e:
            ctx.record(
                cj,
                "InvalidSchedule",
                f"invalid schedule: {e}",
                warning=True,
                component="cronjob-controller",
            )
            return active
        wall = ctx.wall()
        since = (
            parse_time(status.get("lastScheduleTime"))
            or parse_time(m.get("creationTimestamp"))
            or wall
        )
        due: float | None = None
        t = schedule.next_after(since)
        # Only the most recent missed time runs, as with the real controller.
        for _ in range(1000):
            if t > wall:
                break
            due = t
            t = schedule.next_after(t)
        deadline = spec.get("startingDeadlineSeconds")
        if due is not None and isinstance(deadline, int) and due + deadline < wall:
            due = None
        if due is not None:
            policy = spec.get("concurrencyPolicy", "Allow")
            if policy == "Forbid" and active:
                ctx.record(
                    cj,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running "
                    "and concurrency policy is Forbid",
                    component="cronjob-controller",
                )
            else:
                if policy == "Replace":
                    for job in active:
                        jm = meta(job)
                        ctx.delete(ctx.jobs, ns, str(jm.get("name")), "Background")
                        ctx.record(
                            cj,
                            "SuccessfulDelete",
                            f"Deleted job {jm.get('name')}",
                            component="cronjob-controller",
                        )
                    active = []
                created = self._create_job(cj, due)
                if created is not None:
                    active = [*active, created]
                status["lastScheduleTime"] = format_time(due)
        ctx.enqueue_after(max(t - wall, 0.0) + 0.001, Key("cronjob", ns, name))
        return active

    def _create_job(self, cj: Obj, due: float) -> Obj | None:
        ctx = self.ctx
        m = meta(cj)
        ns = str(m.get("namespace"))
        job_name = f"{m.get('name')}-{int(due // 60)}"
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP] = format_time(due)
        job: Obj = {
            "metadata": {
                "name": job_name,
                "namespace": ns,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [owner_reference(ctx.cronjobs, cj)],
            },
            "spec": clone(template.get("spec") or {}),
        }
        created = ctx.create(ctx.jobs, job)
        if created is not None:
            ctx.record(
                cj, "SuccessfulCreate", f"Created job {job_name}", component="cronjob-controller"
            )
        return created
