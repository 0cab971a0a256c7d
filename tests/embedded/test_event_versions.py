"""Events are one storage served as core `v1` and as `events.k8s.io/v1`, as on kube-apiserver.

An Event written through either API is listed, got, watched and deleted through the
other with the field conversion of kube-apiserver's events conversion; each version's
field selectors select it by that version's field labels. Checked with kubectl 1.32 and
1.33 and the `kubernetes` client.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]

T0 = "2026-01-02T03:04:05Z"
T1 = "2026-01-02T03:05:05Z"
MICRO = "2026-01-02T03:04:05.123456Z"


def _events_v1(name: str, namespace: str, pod: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "eventTime": MICRO,
        "reportingController": "example.com/ctrl",
        "reportingInstance": "ctrl-0",
        "action": "Pulling",
        "reason": "Pulling",
        "type": "Normal",
        "note": f"pulling the image of {pod}",
        "regarding": {"kind": "Pod", "name": pod, "namespace": namespace, "apiVersion": "v1"},
        **extra,
    }


def _core(name: str, namespace: str, pod: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "kind": "Pod",
            "name": pod,
            "namespace": namespace,
            "apiVersion": "v1",
            "fieldPath": "spec.containers{app}",
        },
        "reason": "BackOff",
        "message": f"Back-off restarting failed container app in pod {pod}",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": T0,
        "lastTimestamp": T1,
        "count": 7,
        "type": "Warning",
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
        **extra,
    }


def _api(api_client: Any, group: str) -> Any:
    from kubernetes import client

    if group == "events.k8s.io":
        return client.EventsV1Api(api_client)
    return client.CoreV1Api(api_client)


def _post(kubectl: Run, body: dict[str, Any]) -> dict[str, Any]:
    # kubectl sends the times as written (the Python client re-formats time strings).
    data = json.loads(kubectl("create", "-f", "-", "-o", "json", input=json.dumps(body)).stdout)
    assert isinstance(data, dict)
    return data


def _get(api_client: Any, group: str, namespace: str, name: str) -> dict[str, Any]:
    resp = _api(api_client, group).read_namespaced_event(name, namespace, _preload_content=False)
    data = json.loads(resp.data)
    assert isinstance(data, dict)
    return data


def test_created_through_events_k8s_io_kubectl_get_events_shows_it(
    api_client: Any, kctl: Run, namespace: str
) -> None:
    created = _post(kctl, _events_v1("pull", namespace, "web-0"))

    table = kctl("get", "events", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert table[1].split()[1:] == ["Normal", "Pulling", "pod/web-0", "pulling", "the", "image", "of", "web-0"]  # fmt: skip

    core = json.loads(kctl("get", "events.v1.", "pull", "-n", namespace, "-o", "json").stdout)
    assert core["apiVersion"] == "v1"
    assert core["message"] == "pulling the image of web-0"
    assert core["involvedObject"] == {"kind": "Pod", "name": "web-0", "namespace": namespace, "apiVersion": "v1"}  # fmt: skip
    assert core["reportingComponent"] == "example.com/ctrl"
    assert core["reportingInstance"] == "ctrl-0"
    assert core["eventTime"] == created["eventTime"]
    assert core["action"] == "Pulling"
    assert core["source"] == {}
    assert core["firstTimestamp"] is None and core["lastTimestamp"] is None
    assert "note" not in core and "regarding" not in core


def test_created_through_core_reads_converted_through_events_k8s_io(
    api_client: Any, kctl: Run, namespace: str
) -> None:
    series = {"count": 3, "lastObservedTime": MICRO}
    related = {"kind": "Node", "name": "node-1", "apiVersion": "v1"}
    created = _post(
        kctl,
        _core("backoff", namespace, "web-1", series=series, related=related, action="Restart"),
    )

    ev = _get(api_client, "events.k8s.io", namespace, "backoff")
    assert ev["apiVersion"] == "events.k8s.io/v1"
    assert ev["kind"] == "Event"
    assert ev["metadata"]["uid"] == created["metadata"]["uid"]
    assert ev["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert ev["note"] == "Back-off restarting failed container app in pod web-1"
    assert ev["regarding"]["name"] == "web-1"
    assert ev["regarding"]["fieldPath"] == "spec.containers{app}"
    assert ev["deprecatedSource"] == {"component": "kubelet", "host": "node-1"}
    assert ev["deprecatedFirstTimestamp"] == T0
    assert ev["deprecatedLastTimestamp"] == T1
    assert ev["deprecatedCount"] == 7
    assert ev["series"] == series
    assert ev["related"] == related
    assert ev["reportingController"] == "kubelet"
    assert ev["reportingInstance"] == "node-1"
    assert ev["reason"] == "BackOff" and ev["type"] == "Warning" and ev["action"] == "Restart"
    for core_only in ("message", "involvedObject", "source", "count", "reportingComponent"):
        assert core_only not in ev

    # kubectl reads the events.k8s.io form too, by its full name.
    out = json.loads(
        kctl("get", "events.v1.events.k8s.io", "backoff", "-n", namespace, "-o", "json").stdout
    )
    assert out["note"] == ev["note"] and out["deprecatedCount"] == 7
    listed = kctl("get", "events.events.k8s.io", "-n", namespace, "-o", "name").stdout.split()
    assert listed == ["event.events.k8s.io/backoff"]


def test_updates_and_deletes_through_one_version_show_in_the_other(
    api_client: Any, kubectl: Run, namespace: str
) -> None:
    from kubernetes import client

    core_api = client.CoreV1Api(api_client)
    events_api = client.EventsV1Api(api_client)
    _post(kubectl, _events_v1("e1", namespace, "web-2"))

    # Through events.k8s.io an Event's series may change, its note may not (validated in
    # the stored core shape, so the error names `message`, as kube-apiserver's does).
    series = {"count": 2, "lastObservedTime": MICRO}
    events_api.patch_namespaced_event("e1", namespace, {"series": series})
    core = core_api.read_namespaced_event("e1", namespace, _preload_content=False)
    assert json.loads(core.data)["series"] == series
    with pytest.raises(client.ApiException) as refused:
        events_api.patch_namespaced_event("e1", namespace, {"note": "pulled"})
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["message"] == (
        'Event.events.k8s.io "e1" is invalid: message: Invalid value: "pulled": field is immutable'
    )

    core_api.patch_namespaced_event("e1", namespace, {"message": "started", "type": "Warning"})
    ev = events_api.read_namespaced_event("e1", namespace)
    assert ev.note == "started" and ev.type == "Warning"

    core_api.delete_namespaced_event("e1", namespace)
    with pytest.raises(client.ApiException) as err:
        events_api.read_namespaced_event("e1", namespace)
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'events.events.k8s.io "e1" not found'
    assert events_api.list_namespaced_event(namespace).items == []


def test_each_api_validates_events_as_kube_apiserver(kubectl: Run, namespace: str) -> None:
    # events.k8s.io/v1 is strict: an event time, no deprecated fields, a known type.
    bad = _events_v1("strict", namespace, "web-9", deprecatedCount=3, type="Info")
    del bad["eventTime"]
    proc = kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert (
        'The Event "strict" is invalid: \n* eventTime: Required value\n'
        '* type: Invalid value: "": has invalid value: Info\n'
        '* count: Invalid value: "": needs to be unset\n'
    ) in proc.stderr

    # Core v1 is lax, but an Event with an event time needs its reporting fields there too.
    lax = _core("lax", namespace, "web-9", eventTime=MICRO, reportingComponent="")
    del lax["reportingInstance"]
    proc = kubectl("create", "-f", "-", input=json.dumps(lax), check=False)
    assert proc.returncode != 0
    assert 'The Event "lax" is invalid: \n* reportingController: Required value\n' in proc.stderr
    assert "* reportingInstance: Required value\n* action: Required value\n" in proc.stderr
    old_style = _core("old-style", namespace, "web-9")
    old_style["involvedObject"]["namespace"] = "elsewhere"
    proc = kubectl("create", "-f", "-", input=json.dumps(old_style), check=False)
    assert (
        'involvedObject.namespace: Invalid value: "elsewhere": does not match event.namespace'
        in proc.stderr
    )


def _watch(api_client: Any, group: str, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]:
    resp = _api(api_client, group).list_namespaced_event(
        namespace, watch=True, timeout_seconds=10, _preload_content=False
    )
    buf = b""
    for chunk in resp.stream(1024):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                event = json.loads(line)
                yield event["type"], event["object"]


def _watch_in_thread(
    api_client: Any, group: str, namespace: str
) -> queue.Queue[tuple[str, dict[str, Any]]]:
    seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def run() -> None:
        for item in _watch(api_client, group, namespace):
            seen.put(item)

    threading.Thread(target=run, daemon=True).start()
    return seen


def test_a_watch_on_one_version_sees_writes_through_the_other(
    api_client: Any, kubectl: Run, namespace: str
) -> None:
    from kubernetes import client

    events_seen = _watch_in_thread(api_client, "events.k8s.io", namespace)
    core_seen = _watch_in_thread(api_client, "", namespace)
    _post(kubectl, _core("c1", namespace, "web-3"))
    kind, obj = events_seen.get(timeout=10)
    assert kind == "ADDED"
    assert obj["apiVersion"] == "events.k8s.io/v1"
    assert obj["note"].startswith("Back-off") and obj["regarding"]["name"] == "web-3"
    assert core_seen.get(timeout=10)[0] == "ADDED"

    _post(kubectl, _events_v1("e2", namespace, "web-3"))
    kind, obj = core_seen.get(timeout=10)
    assert (kind, obj["apiVersion"], obj["metadata"]["name"]) == ("ADDED", "v1", "e2")
    assert obj["message"] == "pulling the image of web-3"
    assert events_seen.get(timeout=10)[0] == "ADDED"

    client.EventsV1Api(api_client).delete_namespaced_event("c1", namespace)
    kind, obj = core_seen.get(timeout=10)
    assert (kind, obj["metadata"]["name"], obj["apiVersion"]) == ("DELETED", "c1", "v1")
    assert events_seen.get(timeout=10)[0] == "DELETED"


def test_field_selectors_of_each_version(kctl: Run, namespace: str) -> None:
    _post(kctl, _core("by-kubelet", namespace, "web-4"))
    # No deprecated source: `source` selects by the reporting controller.
    _post(kctl, _events_v1("by-ctrl", namespace, "web-5"))

    def names(resource: str, selector: str) -> list[str]:
        out = kctl(
            "get", resource, "-n", namespace, "--field-selector", selector, "-o", "name"
        ).stdout.split()
        return [n.rpartition("/")[2] for n in out]

    assert names("events.v1.", "involvedObject.name=web-4") == ["by-kubelet"]
    assert names("events.v1.", "reportingComponent=example.com/ctrl") == ["by-ctrl"]
    assert names("events.v1.", "source=example.com/ctrl") == ["by-ctrl"]
    assert names("events.v1.", "source=kubelet,type=Warning") == ["by-kubelet"]
    assert names("events.v1.events.k8s.io", "regarding.name=web-5") == ["by-ctrl"]
    assert names("events.v1.events.k8s.io", "reportingController=kubelet") == ["by-kubelet"]
    assert names("events.v1.events.k8s.io", "source=example.com/ctrl") == ["by-ctrl"]
    assert names("events.v1.events.k8s.io", "reason!=BackOff") == ["by-ctrl"]

    for resource, label in (
        ("events.v1.events.k8s.io", "involvedObject.name"),
        ("events.v1.events.k8s.io", "reportingComponent"),
        ("events.v1.", "regarding.name"),
        ("events.v1.", "reportingController"),
    ):
        proc = kctl("get", resource, "-n", namespace, "--field-selector", f"{label}=x", check=False)
        assert proc.returncode != 0
        assert f"field label not supported: {label}" in proc.stderr
