"""The official Kubernetes Python client against keel server: CRUD on several
kinds and a watch. Exits non-zero on any mismatch."""
import threading, time, sys

from kubernetes import client, config, watch

config.load_kube_config()
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "py"

core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="cfg", labels={"app": "py"}), data={"a": "1"}))
assert cm.metadata.uid and cm.metadata.resource_version, cm
got = core.read_namespaced_config_map("cfg", ns)
assert got.data == {"a": "1"}, got.data
got.data["a"] = "2"
upd = core.replace_namespaced_config_map("cfg", ns, got)
assert upd.data["a"] == "2"
assert int(upd.metadata.resource_version) > int(cm.metadata.resource_version)
# A stale resourceVersion loses with 409.
got.data["a"] = "3"
try:
    core.replace_namespaced_config_map("cfg", ns, got)
    sys.exit("stale update succeeded")
except client.rest.ApiException as e:
    assert e.status == 409, e
core.patch_namespaced_config_map("cfg", ns, {"metadata": {"labels": {"patched": "yes"}}})
lst = core.list_namespaced_config_map(ns, label_selector="patched=yes")
assert [c.metadata.name for c in lst.items] == ["cfg"], lst.items

sec = core.create_namespaced_secret(ns, client.V1Secret(
    metadata=client.V1ObjectMeta(name="s"), string_data={"pw": "hunter2"}))
assert core.read_namespaced_secret("s", ns).data["pw"] == "aHVudGVyMg=="

dep = apps.create_namespaced_deployment(ns, client.V1Deployment(
    metadata=client.V1ObjectMeta(name="d"),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "d"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "d"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])))))
assert dep.spec.replicas == 1
apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 4}})
assert apps.read_namespaced_deployment("d", ns).spec.replicas == 4
try:
    core.read_namespaced_config_map("missing", ns)
    sys.exit("missing object found")
except client.rest.ApiException as e:
    assert e.status == 404, e

# Watch: events for objects created while watching, in order.
rv = core.list_namespaced_config_map(ns).metadata.resource_version
def writer():
    time.sleep(0.5)
    for i in range(3):
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"w{i}")))
    core.delete_namespaced_config_map("w0", ns)
threading.Thread(target=writer).start()
seen = []
w = watch.Watch()
for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=20):
    seen.append((ev["type"], ev["object"].metadata.name))
    if len(seen) == 4:
        w.stop()
assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2"), ("DELETED", "w0")], seen

# deletecollection with a label selector removes exactly the matching objects.
for i in range(3):
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"dc{i}", labels={"batch": "x" if i < 2 else "y"})))
core.delete_collection_namespaced_config_map(ns, label_selector="batch=x")
left = sorted(c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector="batch").items)
assert left == ["dc2"], left

apps.delete_namespaced_deployment("d", ns)
core.delete_namespaced_secret("s", ns)
core.delete_namespace(ns)
print("python client ok")
