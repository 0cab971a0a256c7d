"""Hostile request bodies: YAML alias bombs and deep nesting get a 4xx Status, never a 500,
never a stored giant object, and the server keeps answering other clients meanwhile."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from pytest_devloop.embedded.bodies import MAX_DEPTH
from pytest_devloop.embedded.cluster import EmbeddedCluster

GROUP, VERSION, PLURAL = "hostile.example.com", "v1", "blobs"


def send(
    cluster: EmbeddedCluster, method: str, path: str, body: bytes, content_type: str
) -> tuple[int, Any]:
    split = urlsplit(cluster.url)
    assert split.hostname and split.port and cluster.ca_file
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    conn = http.client.HTTPSConnection(split.hostname, split.port, context=ctx, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {cluster.token}", "Content-Type": content_type}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def alias_bomb(name: str, levels: int = 9, width: int = 9) -> bytes:
    """A few hundred bytes of YAML that expand to tens of megabytes (9**8 leaves)."""
    anchors = ['    a0: &a0 ["lol-lol-lol-lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * width)
        anchors.append(f"    a{i}: &a{i} [{refs}]")
    return (
        f"apiVersion: {GROUP}/{VERSION}\nkind: Blob\nmetadata:\n  name: {name}\nspec:\n"
        + "\n".join(anchors)
        + "\n"
    ).encode()


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"x": value}
    return value


@pytest.fixture(scope="module")
def blobs(api_client: Any) -> Iterator[str]:
    """A CRD whose objects keep any field: a bomb sent there would be stored whole."""
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{PLURAL}.{GROUP}"},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": PLURAL, "singular": "blob", "kind": "Blob"},
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    yield f"/apis/{GROUP}/{VERSION}"
    ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")


def stored(api_client: Any, namespace: str) -> list[str]:
    items = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )["items"]
    return [i["metadata"]["name"] for i in items]


def assert_status(code: int, body: Any, codes: tuple[int, ...]) -> None:
    assert code in codes, (code, body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == code


@pytest.mark.parametrize(
    "method, content_type",
    [("POST", "application/yaml"), ("PATCH", "application/apply-patch+yaml")],
)
def test_yaml_alias_bomb_is_refused_and_nothing_is_stored(
    cluster: EmbeddedCluster,
    api_client: Any,
    namespace: str,
    blobs: str,
    method: str,
    content_type: str,
) -> None:
    body = alias_bomb("bomb")
    assert len(body) < 600
    path = f"{blobs}/namespaces/{namespace}/{PLURAL}"
    if method == "PATCH":
        path += "/bomb?fieldManager=hostile"
    code, status = send(cluster, method, path, body, content_type)
    assert_status(code, status, (400, 413))
    assert "alias" in status["message"]
    assert stored(api_client, namespace) == []


def test_small_aliases_expand_as_usual(
    cluster: EmbeddedCluster, api_client: Any, namespace: str, blobs: str
) -> None:
    # What a real API server accepts, this one accepts: modest aliasing is ordinary YAML.
    body = alias_bomb("small", levels=3, width=3)
    code, obj = send(
        cluster, "POST", f"{blobs}/namespaces/{namespace}/{PLURAL}", body, "application/yaml"
    )
    assert code == 201, obj
    assert obj["spec"]["a2"] == [[["lol-lol-lol-lol"]] * 3] * 3
    assert stored(api_client, namespace) == ["small"]


def test_self_referencing_yaml_is_a_bad_request(
    cluster: EmbeddedCluster, namespace: str, blobs: str
) -> None:
    body = (
        f"apiVersion: {GROUP}/{VERSION}\nkind: Blob\nmetadata: {{name: loop}}\nspec: &s [*s]\n"
    ).encode()
    code, status = send(
        cluster, "POST", f"{blobs}/namespaces/{namespace}/{PLURAL}", body, "application/yaml"
    )
    assert_status(code, status, (400,))


@pytest.mark.parametrize("encoding", ["json", "yaml-flow", "yaml-block", "apply"])
def test_deep_nesting_is_a_bad_request_with_a_status(
    cluster: EmbeddedCluster, api_client: Any, namespace: str, blobs: str, encoding: str
) -> None:
    path = f"{blobs}/namespaces/{namespace}/{PLURAL}"
    head = f"apiVersion: {GROUP}/{VERSION}\nkind: Blob\nmetadata:\n  name: deep\nspec:\n"
    if encoding == "json":
        obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Blob", "metadata": {"name": "deep"}}
        body = json.dumps(obj)[:-1].encode() + b', "spec": ' + b"[" * 200_000 + b"]" * 200_000
        body += b"}"
        code, status = send(cluster, "POST", path, body, "application/json")
    elif encoding == "yaml-flow":
        body = (head + "  x: " + "[" * 500_000 + "]" * 500_000 + "\n").encode()
        code, status = send(cluster, "POST", path, body, "application/yaml")
    elif encoding == "yaml-block":
        lines = "".join(" " * (i + 2) + "- \n" for i in range(1500))
        code, status = send(cluster, "POST", path, (head + lines).encode(), "application/yaml")
    else:
        body = (head + "  x: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n").encode()
        code, status = send(
            cluster,
            "PATCH",
            f"{path}/deep?fieldManager=hostile",
            body,
            "application/apply-patch+yaml",
        )
    assert_status(code, status, (400,))
    assert status["reason"] == "BadRequest"
    assert f"more than {MAX_DEPTH} levels" in status["message"]
    assert stored(api_client, namespace) == []


def test_nesting_within_the_limit_is_accepted(
    cluster: EmbeddedCluster, api_client: Any, namespace: str, blobs: str
) -> None:
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Blob",
        "metadata": {"name": "fine"},
        "spec": nested(MAX_DEPTH - 3),
    }
    path = f"{blobs}/namespaces/{namespace}/{PLURAL}"
    code, created = send(cluster, "POST", path, json.dumps(obj).encode(), "application/json")
    assert code == 201, created
    code, applied = send(
        cluster,
        "PATCH",
        f"{path}/fine?fieldManager=hostile",
        json.dumps(obj).encode(),
        "application/apply-patch+yaml",
    )
    assert code == 200, applied
    assert stored(api_client, namespace) == ["fine"]


def test_other_clients_are_served_while_hostile_bodies_arrive(
    cluster: EmbeddedCluster, api_client: Any, namespace: str, blobs: str
) -> None:
    path = f"{blobs}/namespaces/{namespace}/{PLURAL}"
    hostile = [(alias_bomb(f"bomb-{i}"), "application/yaml") for i in range(3)] + [
        (b"[" * 1_000_000 + b"]" * 1_000_000, "application/json") for _ in range(3)
    ]
    answers: list[int] = []
    started = threading.Event()

    def attack() -> None:
        started.set()
        for body, ctype in hostile:
            answers.append(send(cluster, "POST", path, body, ctype)[0])

    attacker = threading.Thread(target=attack)
    attacker.start()
    started.wait()
    core = client.CoreV1Api(api_client)
    reads = 0
    while attacker.is_alive():
        assert core.read_namespace(namespace).metadata.name == namespace
        reads += 1
    attacker.join()
    assert reads >= 1
    assert sorted(set(answers)) in ([400, 413], [400], [413]), answers
    assert all(a in (400, 413) for a in answers) and len(answers) == len(hostile)
    assert stored(api_client, namespace) == []


def test_patches_cannot_nest_an_object_beyond_the_limit(
    cluster: EmbeddedCluster, api_client: Any, namespace: str, blobs: str
) -> None:
    # Each JSON patch is shallow enough, but adds its value at the deepest path so far:
    # the patched object would outgrow the limit after a few rounds.
    path = f"{blobs}/namespaces/{namespace}/{PLURAL}"
    obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Blob", "metadata": {"name": "grow"}}
    code, created = send(cluster, "POST", path, json.dumps(obj).encode(), "application/json")
    assert code == 201, created
    step = MAX_DEPTH // 2
    pointer = "/spec"
    value: Any = nested(step)
    answers = []
    for _ in range(4):
        patch = [{"op": "add", "path": pointer, "value": value}]
        code, body = send(
            cluster,
            "PATCH",
            f"{path}/grow",
            json.dumps(patch).encode(),
            "application/json-patch+json",
        )
        answers.append(code)
        if code != 200:
            assert_status(code, body, (400,))
            assert f"more than {MAX_DEPTH} levels" in body["message"]
            break
        pointer += "/x" * (step - 1)
    assert answers[0] == 200 and answers[-1] == 400, answers
    got = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "grow"
    )
    assert got["metadata"]["name"] == "grow"
