"""Who is asking, and what they may do: identities, service-account tokens, reviews.

Owns the embedded cluster's authentication and its answers to the review APIs:

- identities: the kubeconfig's bearer token is the cluster's one admin user (in
  `system:masters`); a service-account token this cluster signed authenticates as that
  service account (`system:serviceaccount:NS:NAME`);
- `TokenSigner`: ES256-signed JWTs with the claims kube-apiserver puts in bound
  service-account tokens, verifiable with the keys published at `/openid/v1/jwks`
  (discovery at `/.well-known/openid-configuration`);
- the create-only review resources: `serviceaccounts/token` (TokenRequest),
  `tokenreviews`, `selfsubjectreviews` (`kubectl auth whoami`), `selfsubjectaccessreviews`
  (`kubectl auth can-i`), `selfsubjectrulesreviews` (`can-i --list`),
  `subjectaccessreviews` and `localsubjectaccessreviews`.

There is no RBAC enforcement: every authenticated identity is allowed everything, and the
access reviews say so (the admin user is allowed through `cluster-admin`, as on a real
cluster; service accounts too, with a reason saying the embedded cluster does not
evaluate RBAC).
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from pytest_devloop.embedded import errors

Obj = dict[str, Any]

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES = [ISSUER]
ADMIN_USER = "kubernetes-admin"
ADMIN_GROUPS = ["kubeadm:cluster-admins", "system:masters", "system:authenticated"]
MIN_EXPIRATION = 600
DEFAULT_EXPIRATION = 3600
MAX_EXPIRATION = 48 * 3600  # --service-account-max-token-expiration as kubeadm sets it
ADMIN_REASON = (
    'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" '
    'to Group "system:masters"'
)
UNCHECKED_REASON = (
    "the embedded cluster does not evaluate RBAC: every authenticated user is allowed"
)


@dataclass(frozen=True)
class Identity:
    username: str
    groups: list[str]
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def admin(self) -> bool:
        return "system:masters" in self.groups

    def user_info(self) -> Obj:
        out: Obj = {"username": self.username}
        if self.uid:
            out["uid"] = self.uid
        out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ADMIN = Identity(ADMIN_USER, ADMIN_GROUPS)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies this cluster's service-account tokens (ES256 JWTs)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        numbers = self._key.public_key().public_numbers()
        self._jwk = {
            "use": "sig",
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        thumb = json.dumps(
            {k: self._jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":")
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(thumb.encode())
        self.key_id = _b64(digest.finalize())
        self._jwk["kid"] = self.key_id

    def jwks(self) -> Obj:
        return {"keys": [dict(self._jwk)]}

    def sign(self, claims: Obj) -> str:
        header = {"alg": "ES256", "kid": self.key_id}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def verify(self, token: str, now: float | None = None) -> Obj | None:
        """The claims of a token this signer issued and that has not expired, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            raw = _unb64(parts[2])
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("kid") != self.key_id or len(raw) != 64:
            return None
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            self._key.public_key().verify(
                der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            return None
        moment = time.time() if now is None else now
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            return None
        if int(claims.get("exp", 0)) < moment or int(claims.get("nbf", 0)) > moment + 60:
            return None
        return claims

    def service_account_token(
        self,
        namespace: str,
        name: str,
        sa_uid: str,
        *,
        audiences: list[str],
        expiration: int | None,
        bound: Obj | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A token for a service account; `expiration` None means a legacy Secret token."""
        moment = int(time.time() if now is None else now)
        claims: Obj = {"iss": ISSUER}
        if expiration is not None:
            claims.update(aud=audiences, exp=moment + expiration, iat=moment, nbf=moment)
            claims["jti"] = str(uuid.uuid4())
        else:
            # Legacy Secret-based tokens never expire; real ones carry no exp either.
            claims.update(aud=audiences, exp=moment + 10 * 365 * 86400, iat=moment, nbf=moment)
        k8s: Obj = {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}}
        if bound:
            kind = str(bound.get("kind", "")).lower()
            if kind in ("pod", "secret", "node"):
                k8s[kind] = {"name": bound.get("name", ""), "uid": bound.get("uid", "")}
        claims["kubernetes.io"] = k8s
        claims["sub"] = f"system:serviceaccount:{namespace}:{name}"
        return self.sign(claims), int(claims["exp"])

    def identity(self, token: str) -> Identity | None:
        claims = self.verify(token)
        if claims is None:
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns = str(k8s.get("namespace", ""))
        sa = k8s.get("serviceaccount") or {}
        extra: dict[str, list[str]] = {}
        if isinstance(k8s.get("pod"), dict):
            extra["authentication.kubernetes.io/pod-name"] = [str(k8s["pod"].get("name", ""))]
            extra["authentication.kubernetes.io/pod-uid"] = [str(k8s["pod"].get("uid", ""))]
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
        return Identity(
            str(claims.get("sub", "")),
            ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            uid=str(sa.get("uid", "")),
            extra=extra,
        )


def authenticate(header: str, admin_token: str, signer: TokenSigner) -> Identity | None:
    """The identity an `Authorization` header proves, or None (401)."""
    if hmac.compare_digest(header.encode(), f"Bearer {admin_token}".encode()):
        return ADMIN
    if header.startswith("Bearer ") and header.count(".") == 2:
        return signer.identity(header[len("Bearer ") :])
    return None


# -- the review resources ------------------------------------------------------------------


def _meta_of(body: Obj) -> Obj:
    m = body.get("metadata")
    out: Obj = dict(m) if isinstance(m, dict) else {}
    out.setdefault("creationTimestamp", None)
    return out


def _allowed(identity: Identity) -> Obj:
    return {"allowed": True, "reason": ADMIN_REASON if identity.admin else UNCHECKED_REASON}


def token_request(signer: TokenSigner, sa: Obj, body: Obj, *, now: float | None = None) -> Obj:
    """The TokenRequest answer for service account `sa` (201)."""
    spec = dict(body.get("spec") or {})
    audiences = list(spec.get("audiences") or DEFAULT_AUDIENCES)
    expiration = spec.get("expirationSeconds")
    if expiration is None:
        expiration = DEFAULT_EXPIRATION
    if not isinstance(expiration, int) or isinstance(expiration, bool):
        raise errors.bad_request("spec.expirationSeconds must be an integer")
    sa_meta = sa.get("metadata") or {}
    name = str(sa_meta.get("name", ""))
    if expiration < MIN_EXPIRATION:
        raise errors.invalid(
            "TokenRequest",
            name,
            "authentication.k8s.io",
            [
                (
                    "spec.expirationSeconds",
                    f"Invalid value: {expiration}: may not specify a duration less than 10 minutes",
                )
            ],
        )
    expiration = min(expiration, MAX_EXPIRATION)
    bound = spec.get("boundObjectRef")
    if isinstance(bound, dict) and bound.get("kind") not in ("Pod", "Secret", "Node"):
        raise errors.invalid(
            "TokenRequest",
            name,
            "authentication.k8s.io",
            [
                (
                    "spec.boundObjectRef.kind",
                    f'Unsupported value: "{bound.get("kind")}": supported values: "Pod", "Secret", "Node"',
                )
            ],
        )
    token, exp = signer.service_account_token(
        str(sa_meta.get("namespace", "")),
        name,
        str(sa_meta.get("uid", "")),
        audiences=audiences,
        expiration=expiration,
        bound=bound if isinstance(bound, dict) else None,
        now=now,
    )
    spec.update(audiences=audiences, expirationSeconds=expiration)
    spec.setdefault("boundObjectRef", None)
    meta = _meta_of(body)
    meta.update(name=name, namespace=sa_meta.get("namespace"))
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": meta,
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp)),
        },
    }


def review(
    kind: str, body: Obj, identity: Identity, signer: TokenSigner, *, namespace: str | None
) -> Obj:
    """The answer to a create of one of the review kinds (201, nothing is stored)."""
    spec = dict(body.get("spec") or {})
    out: Obj = {
        "kind": kind,
        "apiVersion": str(body.get("apiVersion") or ""),
        "metadata": _meta_of(body),
    }
    if kind == "SelfSubjectReview":
        out["status"] = {"userInfo": identity.user_info()}
        return out
    if kind == "TokenReview":
        token = str(spec.get("token") or "")
        subject = signer.identity(token) if token else None
        claims = signer.verify(token) if token else None
        wanted = list(spec.get("audiences") or DEFAULT_AUDIENCES)
        have = list((claims or {}).get("aud") or [])
        matching = [a for a in wanted if a in have]
        out["spec"] = spec
        if subject is None or not matching:
            out["status"] = {
                "user": {},
                "error": "[invalid bearer token, service account token has been invalidated]"
                if subject is None
                else "token audiences don't match",
            }
        else:
            out["status"] = {
                "authenticated": True,
                "user": subject.user_info(),
                "audiences": matching,
            }
        return out
    if kind == "SelfSubjectRulesReview":
        if not spec.get("namespace"):
            raise errors.invalid(
                kind, "", "authorization.k8s.io", [("spec.namespace", "Required value")]
            )
        out["spec"] = spec
        out["status"] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
        return out
    # SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview
    attrs = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if not attrs and not non_resource:
        raise errors.invalid(
            kind,
            "",
            "authorization.k8s.io",
            [
                (
                    "spec.resourceAttributes",
                    "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            ],
        )
    if (
        kind == "LocalSubjectAccessReview"
        and isinstance(attrs, dict)
        and attrs.get("namespace") not in (None, "", namespace)
    ):
        raise errors.invalid(
            kind,
            "",
            "authorization.k8s.io",
            [
                (
                    "spec.resourceAttributes.namespace",
                    "Invalid value: must match metadata.namespace",
                )
            ],
        )
    if kind != "SelfSubjectAccessReview" and not (spec.get("user") or spec.get("groups")):
        raise errors.invalid(
            kind,
            "",
            "authorization.k8s.io",
            [("spec.user", 'Invalid value: "": at least one of user or group must be specified')],
        )
    out["spec"] = spec
    subject = identity
    if kind != "SelfSubjectAccessReview":
        subject = Identity(str(spec.get("user") or ""), list(spec.get("groups") or []))
    out["status"] = _allowed(subject)
    return out
