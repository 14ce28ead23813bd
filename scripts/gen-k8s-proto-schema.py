#!/usr/bin/env python3
"""Extracts the protobuf schema of the Kubernetes API types keel serves from
the descriptors compiled into a kubectl binary (gogo-protobuf registers each
generated.proto as a gzipped FileDescriptorProto), and writes the compact
table keel-api uses to decode protobuf request bodies.

usage: scripts/gen-k8s-proto-schema.py [KUBECTL] > crates/keel-api/src/proto_schema.json
"""
import json, os, shutil, sys, zlib

WANTED = (
    "k8s.io.api.core.v1", "k8s.io.api.apps.v1", "k8s.io.api.batch.v1",
    "k8s.io.api.networking.v1", "k8s.io.api.autoscaling.v1", "k8s.io.api.autoscaling.v2",
    "k8s.io.api.coordination.v1", "k8s.io.api.discovery.v1",
    "k8s.io.api.admissionregistration.v1", "k8s.io.api.authentication.v1",
    "k8s.io.api.authorization.v1", "k8s.io.api.certificates.v1", "k8s.io.api.events.v1",
    "k8s.io.api.flowcontrol.v1", "k8s.io.api.node.v1", "k8s.io.api.policy.v1",
    "k8s.io.api.rbac.v1", "k8s.io.api.scheduling.v1", "k8s.io.api.storage.v1",
    "k8s.io.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    "k8s.io.kube-aggregator.pkg.apis.apiregistration.v1",
    "k8s.io.apimachinery.pkg.apis.meta.v1", "k8s.io.apimachinery.pkg.runtime",
    "k8s.io.apimachinery.pkg.util.intstr", "k8s.io.apimachinery.pkg.api.resource",
)


def varint(b, i):
    x = s = 0
    while True:
        c = b[i]; i += 1
        x |= (c & 0x7F) << s; s += 7
        if c < 0x80:
            return x, i


def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i); v = b[i:i + n]; i += n
        elif wt == 1:
            v = b[i:i + 8]; i += 8
        elif wt == 5:
            v = b[i:i + 4]; i += 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, v


def message(b, prefix, out):
    name, fs, nested, is_map = None, [], [], False
    for num, v in fields(b):
        if num == 1: name = v.decode()
        elif num == 2: fs.append(v)
        elif num == 3: nested.append(v)
        elif num == 7:
            for n2, v2 in fields(v):
                if n2 == 7 and v2: is_map = True
    full = prefix + "." + name
    table = {}
    for f in fs:
        d = dict(fields(f))
        table[str(d[3])] = [d[1].decode(), d[5], d.get(4) == 3, d.get(6, b"").decode().lstrip(".")]
    out[full] = {"m": is_map, "f": table}
    for n in nested:
        message(n, full, out)


def main():
    kubectl = sys.argv[1] if len(sys.argv) > 1 else os.path.realpath(shutil.which("kubectl"))
    data = open(kubectl, "rb").read()
    magic = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
    out = {}
    i = 0
    while (i := data.find(magic, i)) >= 0:
        try:
            fd = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i:i + 1_000_000])
            d = list(fields(fd))
        except Exception:
            i += 1
            continue
        pkg = next((v.decode() for n, v in d if n == 2), "")
        if pkg in WANTED:
            for n, v in d:
                if n == 4:
                    message(v, pkg, out)
        i += 1
    json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=True)


main()
