"""Decoding of Kubernetes protobuf request bodies (pytest_devloop.embedded.protobuf).

Golden files in data/protobuf/ are real request bodies, captured by a throwaway stub
HTTP server (discovery answers plus a log of every body) from these clients:

* kubectl v1.32.4 (kubernetes/4cb5f07), run through the Google Cloud SDK dispatcher
  at /usr/bin/kubectl, which picks the kubectl matching the server's /version minor
  (32 here). kubectl v1.33.9 sent byte-identical bodies for the same commands.
  Each kubectl golden's .json is the JSON body kubectl v1.31.9 (the same dispatcher,
  /version minor 31; 1.31 still sends JSON) posted for the same command, less its
  ``"metadata": {"creationTimestamp": null}``, which the decoder leaves out.
* helm v3.17.2 and v4.1.4 (scripts/tools.sh), install/upgrade/uninstall of a one-
  ConfigMap chart with ``--labels team=devloop``. Helm only ever sends its release
  Secrets as protobuf, so these .json files are the decoder's output, checked by
  hand and, below, by unpacking the release record they carry.

Fields no client sent (owner references, managed fields, timestamps, events,
preconditions...) are covered by bodies built with the small independent encoder
below, against expectations written out by hand from the Go types' json tags.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_devloop.embedded.protobuf import (
    ProtobufError,
    UnsupportedProtobuf,
    decode_request,
    is_protobuf,
    supported_kinds,
)

DATA = Path(__file__).parent / "data" / "protobuf"

# golden name -> client and command that produced the .bin
GOLDEN: dict[str, str] = {
    "kubectl-create-secret-generic": (
        "kubectl 1.32.4: create secret generic s1 --from-literal=a=b --from-file=bin=bin.dat"
    ),
    "kubectl-create-secret-docker-registry": (
        "kubectl 1.32.4: create secret docker-registry reg1 --docker-server=r.example "
        "--docker-username=u --docker-password=p"
    ),
    "kubectl-create-secret-type-namespace": (
        "kubectl 1.32.4: create secret generic s2 --type=example.com/custom "
        "--from-literal=x=y -n other"
    ),
    "kubectl-create-secret-save-config": (
        "kubectl 1.32.4: create secret generic s3 --from-literal=a=b --save-config"
    ),
    "kubectl-create-configmap": (
        "kubectl 1.32.4: create configmap cm1 --from-literal=k1=v1 --from-file=text.txt "
        "--from-file=bin=bin.dat"
    ),
    "kubectl-create-namespace": "kubectl 1.32.4: create namespace ns1",
    "kubectl-create-serviceaccount": "kubectl 1.32.4: create serviceaccount sa1",
    "kubectl-create-token": "kubectl 1.32.4: create token sa1 --audience=aud1 --duration=10m",
    "kubectl-create-token-bound-object": (
        "kubectl 1.32.4: create token sa1 --bound-object-kind=Pod --bound-object-name=p1 "
        "--bound-object-uid=pod-uid"
    ),
    "kubectl-auth-can-i": "kubectl 1.32.4: auth can-i get pods",
    "kubectl-auth-whoami": "kubectl 1.32.4: auth whoami",
    "helm3-install-secret-create": "helm 3.17.2: install r1 (release record, POST)",
    "helm3-install-secret-update": "helm 3.17.2: install r1 (release record, PUT deployed)",
    "helm3-uninstall-delete-options": "helm 3.17.2: uninstall r1 (DELETE of a release Secret)",
    "helm4-install-secret-create": "helm 4.1.4: install r1 (release record, POST)",
}


def _golden(name: str) -> tuple[bytes, Any]:
    body = (DATA / f"{name}.bin").read_bytes()
    expected = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return body, expected


# ------------------------------------------------------------------ independent encoder
# Written from the protobuf encoding spec, sharing nothing with the decoder.


def _uvarint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative ints go out as 64-bit two's complement, as in Go
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _uvarint(number << 3 | wire)


def vint(number: int, value: int) -> bytes:
    return _tag(number, 0) + _uvarint(value)


def ld(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _tag(number, 2) + _uvarint(len(data)) + data


def entry(number: int, key: str, value: bytes | str) -> bytes:
    return ld(number, ld(1, key) + ld(2, value))


def ts(seconds: int, nanos: int = 0) -> bytes:
    return vint(1, seconds) + (vint(2, nanos) if nanos else b"")


def envelope(api_version: str, kind: str, raw: bytes, content_encoding: str = "") -> bytes:
    type_meta = ld(1, api_version) + ld(2, kind)
    return b"k8s\x00" + ld(1, type_meta) + ld(2, raw) + ld(3, content_encoding) + ld(4, "")


# ------------------------------------------------------------------------ golden files


def test_every_golden_file_is_listed() -> None:
    on_disk = {p.stem for p in DATA.iterdir() if p.suffix in (".bin", ".json")}
    assert on_disk == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_body_decodes_to_its_json(name: str) -> None:
    body, expected = _golden(name)
    assert body.startswith(b"k8s\x00")
    decoded = decode_request(body)
    assert decoded == expected
    # Same key order as Go's JSON encoder (struct order), which kubectl's JSON shows.
    assert json.dumps(decoded) == json.dumps(expected)


def test_kubectl_secret_keeps_binary_bytes_and_drops_go_zero_values() -> None:
    decoded = decode_request(_golden("kubectl-create-secret-generic")[0])
    assert base64.b64decode(decoded["data"]["bin"]) == b"\x00\x01\x02\xff\xfebinary\n"
    # kubectl sent generateName, namespace, uid... as empty strings and an empty
    # creationTimestamp; JSON shows none of them.
    assert decoded["metadata"] == {"name": "s1"}
    assert "type" not in decoded


@pytest.mark.parametrize(
    ("name", "status", "label"),
    [
        ("helm3-install-secret-create", "pending-install", "createdAt"),
        ("helm3-install-secret-update", "deployed", "modifiedAt"),
        ("helm4-install-secret-create", "pending-install", "createdAt"),
    ],
)
def test_helm_release_record_survives_decoding(name: str, status: str, label: str) -> None:
    decoded = decode_request(_golden(name)[0])
    labels = decoded["metadata"]["labels"]
    assert labels["owner"] == "helm"
    assert labels["name"] == "r1"
    assert labels["status"] == status
    assert labels["team"] == "devloop"
    assert labels[label].isdigit()
    assert decoded["type"] == "helm.sh/release.v1"
    # Secret data is base64 in JSON; helm's record is itself base64 of gzipped JSON.
    record = base64.b64decode(base64.b64decode(decoded["data"]["release"]))
    release = json.loads(gzip.decompress(record))
    assert release["name"] == "r1"
    assert release["chart"]["metadata"]["name"] == "tiny"
    assert release["info"]["status"] == status


def test_helm_delete_options_are_empty() -> None:
    body = _golden("helm3-uninstall-delete-options")[0]
    assert decode_request(body) == {"kind": "DeleteOptions", "apiVersion": "v1"}


# ------------------------------------------------------------------ hand-built bodies

_FIELDS_MANAGER = b'{"f:data":{".":{},"f:key":{}},"f:type":{}}'


def _full_metadata() -> bytes:
    return (
        ld(1, "full")
        + ld(2, "full-")
        + ld(3, "ns1")
        + ld(4, "/api/v1/namespaces/ns1/secrets/full")
        + ld(5, "6b1b8c3e-0000-4000-8000-000000000001")
        + ld(6, "42")
        + vint(7, 3)
        + ld(8, ts(1_700_000_000, 999))  # metav1.Time drops the nanos
        + ld(9, ts(1_700_000_600))
        + vint(10, 30)
        + entry(11, "app", "web")
        + entry(11, "empty", "")
        + entry(12, "note", "héllo")
        + ld(
            13,
            ld(1, "Deployment")
            + ld(3, "web")
            + ld(4, "owner-uid")
            + ld(5, "apps/v1")
            # pointers: a sent false shows as false
            + vint(6, 1)
            + vint(7, 0),
        )
        + ld(13, ld(1, "ConfigMap") + ld(3, "cfg") + ld(4, "cfg-uid") + ld(5, "v1"))
        + ld(14, "example.com/cleanup")
        + ld(14, "kubernetes")
        + ld(
            17,
            ld(1, "kubectl-create")
            + ld(2, "Update")
            + ld(3, "v1")
            + ld(4, ts(1_700_000_000))
            + ld(6, "FieldsV1")
            + ld(7, ld(1, _FIELDS_MANAGER)),
        )
        + ld(
            17,
            ld(1, "kubelet")
            + ld(2, "Apply")
            + ld(3, "v1")
            + ld(6, "FieldsV1")
            + ld(7, ld(1, b'{"f:status":{}}'))
            + ld(8, "status"),
        )
    )


_FULL_METADATA_JSON: dict[str, Any] = {
    "name": "full",
    "generateName": "full-",
    "namespace": "ns1",
    "selfLink": "/api/v1/namespaces/ns1/secrets/full",
    "uid": "6b1b8c3e-0000-4000-8000-000000000001",
    "resourceVersion": "42",
    "generation": 3,
    "creationTimestamp": "2023-11-14T22:13:20Z",
    "deletionTimestamp": "2023-11-14T22:23:20Z",
    "deletionGracePeriodSeconds": 30,
    "labels": {"app": "web", "empty": ""},
    "annotations": {"note": "héllo"},
    "ownerReferences": [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "owner-uid",
            "controller": True,
            "blockOwnerDeletion": False,
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "uid": "cfg-uid"},
    ],
    "finalizers": ["example.com/cleanup", "kubernetes"],
    "managedFields": [
        {
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2023-11-14T22:13:20Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}, "f:key": {}}, "f:type": {}},
        },
        {
            "manager": "kubelet",
            "operation": "Apply",
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {}},
            "subresource": "status",
        },
    ],
}


def test_secret_with_full_object_meta() -> None:
    raw = (
        ld(1, _full_metadata())
        + vint(5, 0)
        + entry(2, "key", b"\x00\xffraw")
        + entry(4, "plain", "text")
        + ld(3, "Opaque")
    )
    decoded = decode_request(envelope("v1", "Secret", raw))
    expected = {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": _FULL_METADATA_JSON,
        "immutable": False,
        "data": {"key": "AP9yYXc="},
        "stringData": {"plain": "text"},
        "type": "Opaque",
    }
    assert decoded == expected
    assert json.dumps(decoded) == json.dumps(expected)


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        vint(99, 7)
        + _tag(98, 5)
        + b"\x01\x02\x03\x04"
        + _tag(97, 1)
        + b"\x00" * 8
        + ld(96, "new field from a newer client")
        + _tag(2000, 0)
        + _uvarint(1)  # two-byte tag
    )
    raw = ld(1, ld(1, "s") + unknown) + unknown + ld(3, "Opaque")
    body = envelope("v1", "Secret", raw) + vint(9, 1)  # and in the envelope
    assert decode_request(body) == {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "s"},
        "type": "Opaque",
    }


def test_map_entry_with_missing_parts_gets_zero_values() -> None:
    raw = ld(1, b"") + ld(2, ld(1, "only-key")) + ld(2, ld(2, b"\x01"))
    assert decode_request(envelope("v1", "Secret", raw))["data"] == {"only-key": "", "": "AQ=="}


def test_invalid_utf8_becomes_replacement_character_like_go_json() -> None:
    raw = ld(1, ld(1, b"bad\xffname"))
    assert decode_request(envelope("v1", "Secret", raw))["metadata"]["name"] == "bad\ufffdname"


def test_configmap_immutable_and_binary_data() -> None:
    raw = ld(1, ld(1, "cm")) + vint(4, 1) + entry(2, "a", "1") + entry(3, "b", b"\x01")
    assert decode_request(envelope("v1", "ConfigMap", raw)) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cm"},
        "immutable": True,
        "data": {"a": "1"},
        "binaryData": {"b": "AQ=="},
    }


def test_namespace_spec_and_status() -> None:
    condition = ld(1, "NamespaceDeletionContentFailure") + ld(2, "False") + ld(4, b"") + ld(5, "")
    raw = (
        ld(1, ld(1, "ns") + ld(8, ts(1_700_000_000)))
        + ld(2, ld(1, "kubernetes"))
        + ld(3, ld(1, "Terminating") + ld(2, condition))
    )
    assert decode_request(envelope("v1", "Namespace", raw)) == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "ns", "creationTimestamp": "2023-11-14T22:13:20Z"},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {
            "phase": "Terminating",
            "conditions": [
                {
                    "type": "NamespaceDeletionContentFailure",
                    "status": "False",
                    "lastTransitionTime": None,
                }
            ],
        },
    }


def test_service_account_references() -> None:
    raw = ld(1, ld(1, "sa")) + ld(2, ld(3, "sa-token")) + ld(3, ld(1, "regcred")) + vint(4, 0)
    assert decode_request(envelope("v1", "ServiceAccount", raw)) == {
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": {"name": "sa"},
        "secrets": [{"name": "sa-token"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "automountServiceAccountToken": False,
    }


@pytest.mark.parametrize("api_version", ["v1", "meta.k8s.io/v1", "apps/v1"])
def test_delete_options_every_field(api_version: str) -> None:
    raw = (
        vint(1, 0)
        + ld(2, ld(1, "uid-1") + ld(2, "7"))
        + vint(3, 0)
        + ld(4, "Foreground")
        + ld(5, "All")
        + vint(6, 1)
    )
    assert decode_request(envelope(api_version, "DeleteOptions", raw)) == {
        "kind": "DeleteOptions",
        "apiVersion": api_version,
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1", "resourceVersion": "7"},
        "orphanDependents": False,
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
        "ignoreStoreReadErrorWithClusterBreakingPotential": True,
    }


def test_negative_int64_and_empty_preconditions() -> None:
    raw = vint(1, -1) + ld(2, ld(2, ""))
    assert decode_request(envelope("v1", "DeleteOptions", raw)) == {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": -1,
        "preconditions": {"resourceVersion": ""},  # a *string: sent empty stays
    }


def test_eviction_matches_kubectl_drain_json() -> None:
    # kubectl 1.32 drain --grace-period=17 posts this Eviction as JSON; client-go's
    # typed Evict sends the same object as protobuf.
    raw = ld(1, ld(1, "p1") + ld(3, "default") + ld(8, b"")) + ld(2, vint(1, 17))
    assert decode_request(envelope("policy/v1", "Eviction", raw)) == {
        "kind": "Eviction",
        "apiVersion": "policy/v1",
        "metadata": {"name": "p1", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 17},
    }


def test_core_event_times_and_series() -> None:
    raw = (
        ld(1, ld(1, "ev1") + ld(3, "default"))
        + ld(2, ld(1, "Pod") + ld(2, "default") + ld(3, "p1") + ld(5, "v1"))
        + ld(3, "Started")
        + ld(4, "Started container")
        + ld(5, ld(1, "kubelet") + ld(2, "node1"))
        + ld(6, ts(1_700_000_000, 500))
        + ld(7, b"")
        + vint(8, 2)
        + ld(9, "Normal")
        + ld(10, ts(1_700_000_000, 123_456_789))  # MicroTime truncates to microseconds
        + ld(11, vint(1, 2) + ld(2, ts(1_700_000_001)))
        + ld(12, "")
        + ld(14, "")
        + ld(15, "")
    )
    assert decode_request(envelope("v1", "Event", raw)) == {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": "ev1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p1", "apiVersion": "v1"},
        "reason": "Started",
        "message": "Started container",
        "source": {"component": "kubelet", "host": "node1"},
        "firstTimestamp": "2023-11-14T22:13:20Z",
        "lastTimestamp": None,
        "count": 2,
        "type": "Normal",
        "eventTime": "2023-11-14T22:13:20.123456Z",
        "series": {"count": 2, "lastObservedTime": "2023-11-14T22:13:21.000000Z"},
        "reportingComponent": "",
        "reportingInstance": "",
    }


@pytest.mark.parametrize("api_version", ["events.k8s.io/v1", "events.k8s.io/v1beta1"])
def test_events_api_event(api_version: str) -> None:
    raw = (
        ld(1, ld(1, "ev2") + ld(3, "default"))
        + ld(2, ts(1_700_000_000, 5_000))
        + ld(3, vint(1, 0) + ld(2, b""))
        + ld(4, "kubelet")
        + ld(5, "node1")
        + ld(6, "Pulling")
        + ld(7, "Pulling")
        + ld(8, ld(1, "Pod") + ld(3, "p1"))
        + ld(10, "pulling image")
        + ld(11, "Normal")
        + ld(12, b"")
        + ld(13, b"")
        + ld(14, b"")
        + vint(15, 0)
    )
    assert decode_request(envelope(api_version, "Event", raw)) == {
        "kind": "Event",
        "apiVersion": api_version,
        "metadata": {"name": "ev2", "namespace": "default"},
        "eventTime": "2023-11-14T22:13:20.000005Z",
        "series": {"count": 0, "lastObservedTime": None},
        "reportingController": "kubelet",
        "reportingInstance": "node1",
        "action": "Pulling",
        "reason": "Pulling",
        "regarding": {"kind": "Pod", "name": "p1"},
        "note": "pulling image",
        "type": "Normal",
        "deprecatedSource": {},
        "deprecatedFirstTimestamp": None,
        "deprecatedLastTimestamp": None,
    }


def test_self_subject_review_extra_values() -> None:
    user = (
        ld(1, "alice")
        + ld(3, "dev")
        + ld(3, "system:authenticated")
        + ld(4, ld(1, "scopes") + ld(2, ld(1, "a") + ld(1, "b")))
        + ld(4, ld(1, "none") + ld(2, b""))
    )
    raw = ld(1, b"") + ld(2, ld(1, user))
    assert decode_request(envelope("authentication.k8s.io/v1", "SelfSubjectReview", raw)) == {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "status": {
            "userInfo": {
                "username": "alice",
                "groups": ["dev", "system:authenticated"],
                "extra": {"scopes": ["a", "b"], "none": None},
            }
        },
    }


def test_self_subject_access_review_selectors() -> None:
    requirement = ld(1, "spec.nodeName") + ld(2, "In") + ld(3, "n1")
    attributes = (
        ld(2, "list")
        + ld(5, "pods")
        + ld(8, ld(1, "spec.nodeName=n1") + ld(2, requirement))
        + ld(9, ld(2, ld(1, "app") + ld(2, "Exists")))
    )
    raw = ld(1, b"") + ld(2, ld(1, attributes)) + ld(3, vint(1, 1) + ld(2, "rbac"))
    kind = "SelfSubjectAccessReview"
    assert decode_request(envelope("authorization.k8s.io/v1", kind, raw)) == {
        "kind": kind,
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": {
            "resourceAttributes": {
                "verb": "list",
                "resource": "pods",
                "fieldSelector": {
                    "rawSelector": "spec.nodeName=n1",
                    "requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}],
                },
                "labelSelector": {"requirements": [{"key": "app", "operator": "Exists"}]},
            }
        },
        "status": {"allowed": True, "reason": "rbac"},
    }


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (ts(-1), "1969-12-31T23:59:59Z"),
        (ts(0), "1970-01-01T00:00:00Z"),  # epoch is not Go's zero time
        (ts(253_402_300_799), "9999-12-31T23:59:59Z"),
        (ts(-62_135_596_800), None),  # Go's time.Time{}: JSON null
        (b"", None),
    ],
)
def test_time_rendering(timestamp: bytes, expected: str | None) -> None:
    raw = ld(1, ld(1, "ev")) + ld(6, timestamp)
    assert decode_request(envelope("v1", "Event", raw))["firstTimestamp"] == expected


def test_zero_creation_timestamp_is_left_out() -> None:
    raw = ld(1, ld(1, "s") + ld(8, ts(-62_135_596_800)))
    assert decode_request(envelope("v1", "Secret", raw))["metadata"] == {"name": "s"}


def test_result_starts_with_kind_and_api_version() -> None:
    decoded = decode_request(envelope("v1", "Secret", ld(3, "Opaque")))
    assert list(decoded) == ["kind", "apiVersion", "metadata", "type"]


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [("example.com/v1", "Widget"), ("apps/v1", "Secret"), ("", "Widget")],
)
def test_unknown_kind_is_unsupported(api_version: str, kind: str) -> None:
    with pytest.raises(UnsupportedProtobuf) as caught:
        decode_request(envelope(api_version, kind, ld(1, ld(1, "x"))))
    assert caught.value.kind == kind
    assert caught.value.api_version == api_version
    assert "application/json" in str(caught.value)
    assert isinstance(caught.value, ProtobufError)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "magic"),
        (b'{"kind":"Secret","apiVersion":"v1"}', "magic"),
        (b"k8s\x00", "no kind"),
        (b"k8s\x00" + ld(2, b""), "no kind"),
        (b"k8s\x00\x0a\x80", "truncated"),
        (b"k8s\x00\x0a\x05ab", "truncated"),
        (envelope("v1", "Secret", b"\x0a\x80"), "truncated"),
        (envelope("v1", "Secret", b"\x0a\x05ab"), "truncated"),
        (envelope("v1", "Secret", ld(1, b"\x0a\x09name")), "truncated"),
        (envelope("v1", "Secret", vint(1, 5)), "wire type"),
        (envelope("v1", "Secret", ld(5, b"")), "wire type"),
        (envelope("v1", "Secret", _tag(50, 3)), "wire type"),
        (envelope("v1", "Secret", _tag(50, 7)), "wire type"),
        (envelope("v1", "Secret", b"\x00\x00"), "field number 0"),
        (envelope("v1", "Secret", _tag(99, 0) + b"\xff" * 10 + b"\x01"), "10 bytes"),
        (envelope("v1", "Secret", _tag(99, 5) + b"\x01"), "truncated"),
        (envelope("v1", "Secret", ld(2, b"\x12\x05ab")), "truncated"),
        (envelope("v1", "Secret", b"", content_encoding="gzip"), "contentEncoding"),
        (envelope("v1", "Event", ld(6, ts(10**15))), "out of range"),
        (
            envelope("v1", "Secret", ld(1, ld(17, ld(7, ld(1, b"{not json"))))),
            "not JSON",
        ),
        (
            envelope("v1", "Secret", ld(1, ld(17, ld(7, ld(1, b"[" * 100_000))))),
            "not JSON",
        ),
    ],
)
def test_malformed_body_is_protobuf_error(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message) as caught:
        decode_request(body)
    assert not isinstance(caught.value, UnsupportedProtobuf)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_truncated_and_corrupted_real_bodies_fail_cleanly(name: str) -> None:
    body = _golden(name)[0]
    for size in range(len(body)):
        try:
            decode_request(body[:size])
        except ProtobufError:
            pass
    rng = random.Random(name)
    for _ in range(300):
        corrupt = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            corrupt[rng.randrange(4, len(corrupt))] = rng.randrange(256)
        try:
            assert isinstance(decode_request(bytes(corrupt)), dict)
        except ProtobufError:
            pass


# ---------------------------------------------------------------------- the rest of it


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/vnd.kubernetes.protobuf", True),
        ("Application/VND.Kubernetes.Protobuf; charset=utf-8", True),
        (" application/vnd.kubernetes.protobuf;stream=watch", True),
        ("application/json", False),
        ("application/vnd.kubernetes.protobuf+json", False),
        ("application/cbor", False),
        ("", False),
    ],
)
def test_is_protobuf(content_type: str, expected: bool) -> None:
    assert is_protobuf(content_type) is expected


def test_supported_kinds_names_the_schemas() -> None:
    kinds = supported_kinds()
    for name in (
        "v1/Secret",
        "v1/ConfigMap",
        "events.k8s.io/v1/Event",
        "*/DeleteOptions",
        "apps/v1/Deployment",
        "batch/v1/CronJob",
        "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
    ):
        assert name in kinds
