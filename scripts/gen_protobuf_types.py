"""Generate `pytest_devloop/embedded/data/protobuf_types.json` from the Kubernetes Go types.

The embedded server decodes protobuf request bodies with a table of wire facts per Go
struct: field number, JSON name, value kind, how Go's JSON encoder shows it (omitempty,
pointer, inline) and the nested type. Those facts live in the struct tags of the API types
(`json:"replicas,omitempty" protobuf:"varint,1,opt,name=replicas"`); this script reads
them from git checkouts of `k8s.io/api` and `k8s.io/apimachinery` at a release tag:

    python scripts/gen_protobuf_types.py --api DIR --apimachinery DIR --tag v0.33.9

Only the table is generated; the decoder is `embedded/protobuf.py`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

# k8s.io/api package directory -> API group
GROUPS = {
    "core/v1": "",
    "apps/v1": "apps",
    "batch/v1": "batch",
    "autoscaling/v1": "autoscaling",
    "autoscaling/v2": "autoscaling",
    "networking/v1": "networking.k8s.io",
    "rbac/v1": "rbac.authorization.k8s.io",
    "policy/v1": "policy",
    "scheduling/v1": "scheduling.k8s.io",
    "storage/v1": "storage.k8s.io",
    "coordination/v1": "coordination.k8s.io",
    "discovery/v1": "discovery.k8s.io",
    "admissionregistration/v1": "admissionregistration.k8s.io",
    "node/v1": "node.k8s.io",
    "events/v1": "events.k8s.io",
    "flowcontrol/v1": "flowcontrol.apiserver.k8s.io",
    "certificates/v1": "certificates.k8s.io",
    "authentication/v1": "authentication.k8s.io",
    "authorization/v1": "authorization.k8s.io",
}
META = "meta/v1"
# Go types with a wire form of their own (decoded by hand in protobuf.py)
SPECIAL = {
    "meta/v1.Time": "time",
    "meta/v1.MicroTime": "microtime",
    "meta/v1.Duration": "duration",
    "meta/v1.FieldsV1": "fieldsv1",
    "meta/v1.ObjectMeta": "objectmeta",
    "resource.Quantity": "quantity",
    "intstr.IntOrString": "intorstring",
    "runtime.RawExtension": "raw",
}
SCALARS = {
    "string": "string",
    "bool": "bool",
    "int32": "int32",
    "int64": "int64",
    "int": "int64",
    "float64": "double",
    "types.UID": "string",
    "byte": "int32",
}

_FIELD = re.compile(r"^\s+(?:(\w+)\s+)?([\w.\[\]*]+)\s+`([^`]*)`")
_TYPE = re.compile(r"^type\s+(\w+)\s+(struct\s*\{|[\w.\[\]*]+)")
_TAG = re.compile(r'(\w+):"([^"]*)"')


def _show(repo: Path, tag: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"{tag}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _imports(text: str) -> dict[str, str]:
    """Import alias -> package key (`meta/v1`, `core/v1`, `resource`, ...)."""
    out: dict[str, str] = {}
    for alias, path in re.findall(r'^\s*(\w+)?\s*"([^"]+)"', text, re.M):
        if path.startswith("k8s.io/api/"):
            key = path.removeprefix("k8s.io/api/")
        elif path.endswith("pkg/apis/meta/v1"):
            key = META
        else:
            key = path.rsplit("/", 1)[-1]
        out[alias or path.rsplit("/", 1)[-1]] = key
    return out


def parse_package(text: str, pkg: str, structs: dict, aliases: dict) -> None:
    block = re.search(r"^import \((.*?)^\)", text, re.M | re.S)
    single = re.findall(r'^import\s+(\w+\s+)?("[^"]+")', text, re.M)
    imports = _imports((block.group(1) if block else "") + "\n".join(f"{a} {p}" for a, p in single))
    current: str | None = None
    for line in text.splitlines():
        m = _TYPE.match(line)
        if m:
            name, body = m.groups()
            if body.startswith("struct"):
                current = f"{pkg}.{name}"
                structs[current] = {"fields": [], "imports": imports, "pkg": pkg}
            else:
                current = None
                aliases[f"{pkg}.{name}"] = (body, imports, pkg)
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None:
            continue
        fm = _FIELD.match(line)
        if not fm:
            continue
        name, gotype, tags = fm.groups()
        tag = dict(_TAG.findall(tags))
        if "protobuf" not in tag or "json" not in tag:
            continue
        if name is None:  # an embedded struct: `metav1.ObjectMeta` or `VolumeSource`
            name = gotype.rsplit(".", 1)[-1]
        pb = tag["protobuf"].split(",")
        number = int(pb[1])
        json_parts = tag["json"].split(",")
        structs[current]["fields"].append(
            {
                "number": number,
                "json": json_parts[0],
                "omitempty": "omitempty" in json_parts[1:],
                "omitzero": "omitzero" in json_parts[1:],
                "inline": "inline" in json_parts[1:],
                "gotype": gotype,
            }
        )


def resolve(gotype: str, imports: dict, pkg: str, aliases: dict) -> str:
    """A type reference as `pkg.Name` (or a builtin name)."""
    if gotype in SCALARS or gotype == "[]byte":
        return gotype
    if "." in gotype:
        alias, name = gotype.split(".", 1)
        key = imports.get(alias, alias)
        if key == "types" and name == "UID":
            return "types.UID"
        return f"{key}.{name}"
    return f"{pkg}.{gotype}"


def describe(gotype: str, imports: dict, pkg: str, aliases: dict, structs: dict) -> dict:
    """{kind, ref?, value?}: the wire/JSON kind of a Go type."""
    pointer = gotype.startswith("*")
    gotype = gotype.lstrip("*")
    if gotype == "[]byte":
        return {"kind": "bytes", "pointer": pointer}
    if gotype.startswith("[]"):
        inner = describe(gotype[2:], imports, pkg, aliases, structs)
        return {**inner, "repeated": True, "pointer": pointer}
    if gotype.startswith("map["):
        value = gotype.split("]", 1)[1]
        inner = describe(value, imports, pkg, aliases, structs)
        return {"kind": "map", "value": inner, "pointer": pointer}
    if gotype in SCALARS:
        return {"kind": SCALARS[gotype], "pointer": pointer}
    full = resolve(gotype, imports, pkg, aliases)
    if full in SPECIAL:
        return {"kind": SPECIAL[full], "pointer": pointer}
    if full in SCALARS:
        return {"kind": SCALARS[full], "pointer": pointer}
    if full in aliases:
        body, imp, apkg = aliases[full]
        inner = describe(body, imp, apkg, aliases, structs)
        inner["pointer"] = pointer or inner.get("pointer", False)
        return inner
    if full in structs:
        return {"kind": "message", "ref": full, "pointer": pointer}
    raise KeyError(f"unknown Go type {gotype} ({full}) in {pkg}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", type=Path, required=True)
    parser.add_argument("--apimachinery", type=Path, required=True)
    parser.add_argument("--tag", default="v0.33.9")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1]
        / "pytest_devloop/embedded/data/protobuf_types.json",
    )
    args = parser.parse_args()
    structs: dict = {}
    aliases: dict = {}
    meta_files = ["types.go", "micro_time.go", "time.go", "duration.go"]
    for f in meta_files:
        try:
            text = _show(args.apimachinery, args.tag, f"pkg/apis/meta/v1/{f}")
        except subprocess.CalledProcessError:
            continue
        parse_package(text, META, structs, aliases)
    kinds: dict[str, str] = {}
    for pkg in GROUPS:
        names = subprocess.run(
            ["git", "-C", str(args.api), "ls-tree", "--name-only", f"{args.tag}:{pkg}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for fname in names:
            if fname.startswith("types") and fname.endswith(".go") and "swagger" not in fname:
                parse_package(_show(args.api, args.tag, f"{pkg}/{fname}"), pkg, structs, aliases)
    out_types: dict[str, list] = {}
    needed = []
    for name, st in structs.items():
        pkg = st["pkg"]
        if pkg == META:
            continue
        if any(f["gotype"] == "metav1.ObjectMeta" for f in st["fields"]):
            version = pkg.split("/")[1]
            group = GROUPS[pkg]
            api_version = f"{group}/{version}" if group else version
            kinds[f"{api_version} {name.split('.', 1)[1]}"] = name
            needed.append(name)
    seen: set[str] = set()
    while needed:
        name = needed.pop()
        if name in seen:
            continue
        seen.add(name)
        st = structs[name]
        fields = []
        for f in st["fields"]:
            d = describe(f["gotype"], st["imports"], st["pkg"], aliases, structs)
            kind = d["kind"]
            repeated = bool(d.get("repeated"))
            ref = d.get("ref", "")
            value = d.get("value")
            if kind == "message":
                needed.append(ref)
            if value is not None and value["kind"] == "message":
                needed.append(value["ref"])
            # How Go's encoding/json shows the field (see the modes in protobuf.py).
            if f["inline"]:
                mode = "inline"
            elif f["omitzero"]:
                mode = "omitzero"
            elif kind in ("time", "microtime") and not d["pointer"]:
                mode = "omitempty_time" if f["omitempty"] else "nullable"
            elif d["pointer"]:
                mode = "optional" if f["omitempty"] else "nullable"
            elif repeated or kind in ("map", "bytes", "raw"):
                mode = "omitempty" if f["omitempty"] else "nullable"
            elif kind in ("message", "objectmeta", "quantity", "intorstring", "duration"):
                mode = "required"
            else:
                mode = "omitempty" if f["omitempty"] else "required"
            entry = [f["number"], f["json"], kind, mode, repeated, ref]
            if value is not None:
                entry.append([value["kind"], value.get("ref", ""), bool(value.get("repeated"))])
            fields.append(entry)
        out_types[name] = fields
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "source": f"k8s.io/api and k8s.io/apimachinery {args.tag}",
        "kinds": dict(sorted(kinds.items())),
        "types": dict(sorted(out_types.items())),
    }
    args.out.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n")
    print(f"{len(kinds)} kinds, {len(out_types)} types -> {args.out}")


if __name__ == "__main__":
    main()
