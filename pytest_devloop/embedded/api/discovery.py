"""Discovery verbs of the embedded API server: API groups and versions, OpenAPI, /version,
and service-account issuer discovery (what clients read before they address a resource).
"""

from __future__ import annotations

from typing import Any

from pytest_devloop.embedded import auth as authn
from pytest_devloop.embedded import errors, openapi
from pytest_devloop.embedded.api.context import ApiContext, Request
from pytest_devloop.k8s.resources import api_group

KUBE_VERSION = "v1.33.0"


class Discovery:
    """The answers that describe the server rather than an object."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def route_openapi(self, parts: list[str], req: Request) -> tuple[int, Any, str]:
        if parts[1:2] == ["v2"]:
            if "protobuf" in req.accept:
                return (
                    200,
                    openapi.swagger_v2_protobuf(KUBE_VERSION, self.ctx.registry, self.ctx.crds()),
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                )
            return 200, openapi.swagger_v2(KUBE_VERSION, self.ctx.registry, self.ctx.crds()), ""
        if parts[1:2] == ["v3"]:
            if len(parts) == 2:
                return (
                    200,
                    openapi.index_document(self.ctx.registry, KUBE_VERSION, self.ctx.crds()),
                    "",
                )
            if parts[2] == "api" and len(parts) == 4:
                group, version = "", parts[3]
            elif parts[2] == "apis" and len(parts) == 5:
                group, version = parts[3], parts[4]
            else:
                raise errors.path_not_found(req.path)
            if not self.ctx.registry.in_group_version(group, version):
                raise errors.path_not_found(req.path)
            return (
                200,
                openapi.group_version_document(
                    self.ctx.registry, group, version, KUBE_VERSION, self.ctx.crds()
                ),
                "",
            )
        raise errors.path_not_found(req.path)

    def version_info(self) -> dict[str, Any]:
        major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": KUBE_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = [api_group(g, v) for g, v in self.ctx.registry.groups().items() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def openid_configuration(self) -> dict[str, Any]:
        """Service-account issuer discovery: where the token keys are published."""
        return {
            "issuer": authn.ISSUER,
            "jwks_uri": f"{authn.ISSUER}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }
