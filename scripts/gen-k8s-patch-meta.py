#!/usr/bin/env python3
"""Generate crates/keel-api/src/patch_meta.json: the patch and list metadata
Kubernetes' OpenAPI carries per type and field (x-kubernetes-patch-strategy,
x-kubernetes-patch-merge-key, x-kubernetes-list-type,
x-kubernetes-list-map-keys, x-kubernetes-map-type), read from the Go struct
tags and `// +` markers of the API types, which is where Kubernetes' own
OpenAPI generator reads them. The k8s-openapi crate keel takes its schemas
from drops these extensions, so keel adds them back from this file.

usage: scripts/gen-k8s-patch-meta.py API_GIT REF APIMACHINERY_GIT REF \
           > crates/keel-api/src/patch_meta.json
  API_GIT: a git directory of kubernetes/api (e.g. tag v0.33.9)
  APIMACHINERY_GIT: a git directory of kubernetes/apimachinery (same tag)
"""

import json
import re
import subprocess
import sys

STRUCT = re.compile(r"^type (\w+) struct \{")
FIELD = re.compile(r"^\t(?:(\w+)\s+)?([\w.\[\]*]+)\s+`([^`]*)`")
TAG = re.compile(r'(\w+):"([^"]*)"')
MARKER = re.compile(r"^\s*// \+(listType|listMapKey|mapType)=(\S+)")


def git(repo, *args):
    return subprocess.run(
        ["git", "--git-dir", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def parse(src, prefix, types, inlines):
    """Fills types[def][field] with extensions and inlines[def] with embedded types."""
    current = None
    markers = {}
    for line in src.splitlines():
        m = STRUCT.match(line)
        if m:
            current = f"{prefix}.{m.group(1)}"
            types.setdefault(current, {})
            markers = {}
            continue
        if current is None:
            continue
        if line.startswith("}"):
            current = None
            continue
        m = MARKER.match(line)
        if m:
            k, v = m.groups()
            if k == "listMapKey":
                markers.setdefault(k, []).append(v)
            else:
                markers[k] = v
            continue
        if line.strip().startswith("//") or not line.strip():
            if not line.strip():
                markers = {}
            continue
        m = FIELD.match(line)
        if not m:
            markers = {}
            continue
        tags = dict(TAG.findall(m.group(3)))
        name = tags.get("json", "").split(",")[0]
        if tags.get("json", "").startswith(",inline") or (m.group(1) is None and name == ""):
            typ = m.group(2).lstrip("*")
            inlines.setdefault(current, []).append(typ if "." in typ else f"{prefix}.{typ}")
        elif name and name != "-":
            ext = {}
            if "patchStrategy" in tags:
                ext["x-kubernetes-patch-strategy"] = tags["patchStrategy"]
            if "patchMergeKey" in tags:
                ext["x-kubernetes-patch-merge-key"] = tags["patchMergeKey"]
            if "listType" in markers:
                ext["x-kubernetes-list-type"] = markers["listType"]
            if "listMapKey" in markers:
                ext["x-kubernetes-list-map-keys"] = markers["listMapKey"]
            if "mapType" in markers:
                ext["x-kubernetes-map-type"] = markers["mapType"]
            if ext:
                types[current][name] = ext
        markers = {}


def main():
    api, api_ref, mach, mach_ref = sys.argv[1:5]
    types, inlines = {}, {}
    files = git(api, "ls-tree", "-r", "--name-only", api_ref).split()
    for f in files:
        if not f.endswith(".go") or "generated" in f or f.endswith("_test.go"):
            continue
        pkg = f.rsplit("/", 1)[0]
        if pkg.count("/") != 1:
            continue
        parse(git(api, "show", f"{api_ref}:{f}"), "io.k8s.api." + pkg.replace("/", "."), types, inlines)
    meta = "pkg/apis/meta/v1"
    for f in git(mach, "ls-tree", "--name-only", mach_ref, meta + "/").split():
        if f.endswith(".go") and "generated" not in f and not f.endswith("_test.go"):
            parse(git(mach, "show", f"{mach_ref}:{f}"), "io.k8s.apimachinery." + meta.replace("/", "."), types, inlines)
    # Go's qualified names inside the files: metav1.X and the like.
    def resolve(name, owner):
        if name.startswith("metav1."):
            return "io.k8s.apimachinery.pkg.apis.meta.v1." + name[7:]
        if "." in name.split("io.k8s.", 1)[-1] and not name.startswith("io.k8s."):
            return None
        return name

    def fields(d, depth=0):
        out = {}
        for inl in inlines.get(d, []):
            r = resolve(inl, d)
            if r and depth < 8:
                out.update(fields(r, depth + 1))
        out.update(types.get(d, {}))
        return out

    result = {}
    for d in sorted(types):
        f = fields(d)
        if f:
            result[d] = dict(sorted(f.items()))
    json.dump(result, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
