#!/usr/bin/env bash
# keel's quickstart on embedded defaults (state under /var/lib/keel, or
# $KEEL_ROOT). It grows with each capability: the offline busybox base image
# through a local registry and back; a Dockerfile built, run and composed; a
# Deployment of it applied to keel server with kubectl; a canary Rollout of
# it promoted with keel rollout; a chart rendered; a GitHub Actions workflow
# run; a Terraform configuration applied.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
if [ -n "${KEEL_BIN:-}" ]; then
  KEEL="$KEEL_BIN"  # a keel binary built already (skips the release build)
else
  cargo build --release --locked -p keel >&2
  KEEL="$CARGO_TARGET_DIR/release/keel"
fi
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  step() { printf '\n==> %s\n' "$*"; }
fi

step "keel version"
"$KEEL" version

step "import Debian's busybox-static as busybox:latest"
"$KEEL" image seed-busybox busybox:latest
"$KEEL" image prune -f >/dev/null  # an earlier busybox:latest, now untagged
"$KEEL" images busybox

REG_DIR="$(mktemp -d /tmp/keel-quickstart-registry.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$REG_DIR/config.yml" <<CONF
version: 0.1
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
log:
  level: warn
CONF
docker-registry serve "$REG_DIR/config.yml" >"$REG_DIR/log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null; rm -rf "$REG_DIR"' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

step "push it to a local registry (Debian's docker-registry on 127.0.0.1:$PORT)"
"$KEEL" tag busybox "127.0.0.1:$PORT/quickstart/busybox:1"
"$KEEL" push "127.0.0.1:$PORT/quickstart/busybox:1"

step "remove it locally (blobs go too) and pull it back from the registry"
"$KEEL" rmi "127.0.0.1:$PORT/quickstart/busybox:1" busybox:latest
"$KEEL" pull "127.0.0.1:$PORT/quickstart/busybox:1"
"$KEEL" tag "127.0.0.1:$PORT/quickstart/busybox:1" busybox:latest
"$KEEL" images --digests

step "save it to an archive that docker and podman load"
"$KEEL" save -o "$REG_DIR/busybox.tar" busybox
ls -l "$REG_DIR/busybox.tar"
"$KEEL" history busybox
"$KEEL" rmi "127.0.0.1:$PORT/quickstart/busybox:1" >/dev/null  # that registry is gone after this script

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_get() { python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())' "$1"; }

step "build an image from a Dockerfile (keel build; the second build is all cache hits)"
APP_DIR="$(mktemp -d /tmp/keel-quickstart-app.XXXXXX)"
trap 'kill $REG_PID 2>/dev/null; rm -rf "$REG_DIR" "$APP_DIR"' EXIT
cat > "$APP_DIR/Dockerfile" <<'DOCKERFILE'
FROM busybox:latest
ARG GREETING=hello
RUN mkdir -p /www && echo "$GREETING from a keel-built image" > /www/index.html
EXPOSE 80
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
DOCKERFILE
"$KEEL" build -t quickstart/web:1 --progress plain "$APP_DIR"
"$KEEL" build -t quickstart/web:1 --progress plain "$APP_DIR"

step "run it with a published port, fetch its page, stop it"
WEB_PORT="$(free_port)"
"$KEEL" rm -f qs-web >/dev/null 2>&1 || true
"$KEEL" run -d --rm --name qs-web -p "127.0.0.1:$WEB_PORT:80" quickstart/web:1
for _ in $(seq 50); do http_get "http://127.0.0.1:$WEB_PORT/" 2>/dev/null && break; sleep 0.1; done
"$KEEL" ps --filter name=qs-web
"$KEEL" ps --filter 'name=^qs-' --format 'table {{.Names}}\t{{.Image}}\t{{.State}}'
"$KEEL" inspect -f '{{.State.Status}} {{json .Config.Cmd}}' qs-web
"$KEEL" top qs-web
# What the container changed, kept as an image of its own (docker diff/commit).
"$KEEL" exec qs-web sh -c 'echo patched > /www/patch.txt'
"$KEEL" diff qs-web
"$KEEL" commit -m "patched by hand" qs-web quickstart/web:patched
"$KEEL" run --rm --network none quickstart/web:patched cat /www/patch.txt
# New limits for the running container (its cgroup changes at once) and
# what happened to it, as docker's update and events show them.
QS_T0="$(date +%s)"
"$KEEL" update --cpus 0.5 -m 64m --memory-swap 128m qs-web
"$KEEL" exec qs-web cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "$KEEL" exec qs-web cat /sys/fs/cgroup/memory.max
"$KEEL" stop -t 1 qs-web >/dev/null
"$KEEL" events --since "$QS_T0" --until "$(date +%s.%N)" --filter container=qs-web --format '{{.Action}} {{.Actor.Attributes.name}}'

step "volumes as docker's: a file bound as a file, an empty volume filled from the image"
echo "bound from the host" > "$APP_DIR/motd"
(cd "$APP_DIR" && "$KEEL" run --rm --network none -v ./motd:/etc/motd:ro busybox cat /etc/motd)
"$KEEL" volume rm -f qs-www >/dev/null 2>&1
"$KEEL" run --rm --network none -v qs-www:/www quickstart/web:1 cat /www/index.html
"$KEEL" volume rm qs-www >/dev/null

step "networks as docker's: an internal network (no route out) with a label; --volumes-from"
"$KEEL" network rm qs-sealed >/dev/null 2>&1 || true
"$KEEL" network create --internal --label app=quickstart qs-sealed >/dev/null
"$KEEL" network ls --filter label=app=quickstart
"$KEEL" run --rm --network qs-sealed busybox sh -c 'if ip route | grep -q default; then exit 1; fi; echo "no default route"'
"$KEEL" rm -f qs-data >/dev/null 2>&1 || true
"$KEEL" create --name qs-data -v /data busybox true >/dev/null
"$KEEL" run --rm --network none --volumes-from qs-data busybox sh -c 'echo shared > /data/f'
"$KEEL" run --rm --network none --volumes-from qs-data:ro busybox cat /data/f
"$KEEL" rm -v qs-data >/dev/null
"$KEEL" network rm qs-sealed >/dev/null

step "compose: the web image and a client that reaches it by service name"
cat > "$APP_DIR/compose.yaml" <<'YAML'
services:
  web:
    image: quickstart/web:1
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1/"]
      interval: 1s
  client:
    image: busybox:latest
    depends_on:
      web:
        condition: service_healthy
    command: ["wget", "-qO-", "http://web/"]
YAML
(cd "$APP_DIR" && "$KEEL" compose -p quickstart up -d --wait web \
  && "$KEEL" compose -p quickstart run --rm -T client </dev/null \
  && "$KEEL" compose -p quickstart ps \
  && "$KEEL" compose -p quickstart images \
  && "$KEEL" compose -p quickstart down)

step "keel server: a Kubernetes API on 127.0.0.1 that the real kubectl uses"
command -v kubectl >/dev/null || { echo "error: kubectl not found" >&2; echo "hint: install kubectl (1.27 to 1.33) to try keel server with it" >&2; exit 1; }
API_PORT="$(free_port)"
"$KEEL" server --disable-agent --listen "127.0.0.1:$API_PORT" --write-kubeconfig "$APP_DIR/kubeconfig" >"$APP_DIR/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $REG_PID $SERVER_PID 2>/dev/null; rm -rf "$REG_DIR" "$APP_DIR"' EXIT
export KUBECONFIG="$APP_DIR/kubeconfig"
for _ in $(seq 100); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.1; done
kubectl auth whoami
kubectl create namespace quickstart --dry-run=client -o yaml | kubectl apply -f -
kubectl -n quickstart create deployment web --image=quickstart/web:1 --replicas=2 \
  --dry-run=client -o yaml | kubectl apply --server-side -f -
kubectl -n quickstart get deployment web -o wide
# The controllers roll it out: a ReplicaSet and its 2 pods (Pending: no node agent yet).
kubectl -n quickstart wait --for=jsonpath='{.status.replicas}'=2 deployment/web --timeout=30s
kubectl -n quickstart get replicasets,pods -l app=web
kubectl -n quickstart rollout history deployment/web
kubectl -n quickstart delete deployment web
# A StatefulSet: stable names db-0, db-1 and a claim per pod from the default
# local-path class (it binds once a node takes the pod: WaitForFirstConsumer).
kubectl get storageclass
kubectl apply -f - <<'YAML'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: quickstart}
spec:
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: quickstart/web:1}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
YAML
kubectl -n quickstart wait --for=jsonpath='{.status.replicas}'=2 statefulset/db --timeout=30s
kubectl -n quickstart get statefulset db && kubectl -n quickstart get pods,pvc -l app=db
kubectl -n quickstart delete statefulset db
kubectl -n quickstart create serviceaccount bot --dry-run=client -o yaml | kubectl apply -f -
kubectl -n quickstart create rolebinding bot-view --clusterrole=view --serviceaccount=quickstart:bot \
  --dry-run=client -o yaml | kubectl apply -f -
BOT="$(kubectl -n quickstart create token bot --duration 1h)"
echo "bot may list pods: $(kubectl --token "$BOT" -n quickstart auth can-i list pods), create them: $(kubectl --token "$BOT" -n quickstart auth can-i create pods || true)"
kubectl label --overwrite namespace quickstart pod-security.kubernetes.io/enforce=restricted
kubectl -n quickstart run root-shell --image=quickstart/web:1 --privileged 2>&1 || true   # refused by PodSecurity
# ResourceQuota: usage kept in status, concurrent creates cannot overshoot it.
kubectl -n quickstart create quota small --hard=count/configmaps=3 --dry-run=client -o yaml | kubectl apply -f -
kubectl -n quickstart create configmap one --from-literal=a=1 --dry-run=client -o yaml | kubectl apply -f -
kubectl -n quickstart describe quota small
kubectl -n quickstart delete quota small
# Strategic merge patch: Service ports merge by their port.
kubectl -n quickstart create service clusterip web --tcp=80:8080 --dry-run=client -o yaml | kubectl apply -f -
kubectl -n quickstart patch service web -p '{"spec":{"ports":[{"name":"https","port":443}]}}'
kubectl -n quickstart get service web -o jsonpath='{.spec.ports[*].port}{"\n"}'
# Ingress: `keel` is the default IngressClass; each node agent's gateway serves it on :80/:443.
kubectl get ingressclass
kubectl -n quickstart create ingress web --rule='web.example/*=web:80' --dry-run=client -o yaml | kubectl apply -f -
# CEL: a ValidatingAdmissionPolicy bound to this namespace refuses configmaps without an owner label.
kubectl label --overwrite namespace quickstart policy=cel
kubectl apply -f - <<'YAML'
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: owner-label}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  validations:
  - expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
    messageExpression: "'configmap ' + object.metadata.name + ' needs an owner label'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: owner-label-quickstart}
spec:
  policyName: owner-label
  validationActions: [Deny]
  matchResources: {namespaceSelector: {matchLabels: {policy: cel}}}
YAML
for _ in $(seq 100); do kubectl -n quickstart create configmap unowned --dry-run=server -o name >/dev/null 2>&1 || break; sleep 0.1; done
kubectl -n quickstart create configmap unowned 2>&1 || true   # refused by the policy
# terraform's kubernetes state backend, on keel server: keel infra keeps its state in a Secret.
TFK8S_DIR="$(mktemp -d /tmp/keel-quickstart-tfk8s.XXXXXX)"
printf 'terraform {\n  backend "kubernetes" {\n    secret_suffix = "quickstart"\n  }\n}\nresource "terraform_data" "x" {\n  input = "kept in keel server"\n}\n' >"$TFK8S_DIR/main.tf"
(cd "$TFK8S_DIR" && export KUBE_CONFIG_PATH="$KUBECONFIG" && "$KEEL" infra init >/dev/null \
  && "$KEEL" infra apply -auto-approve -no-color | tail -1 && "$KEEL" infra destroy -auto-approve -no-color | tail -1)
kubectl get secret tfstate-default-quickstart
rm -rf "$TFK8S_DIR"
# The scheduler: a (fake) node registers, a pod lands on it, a pod too big for it is explained.
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Node
metadata: {name: quickstart-node, labels: {kubernetes.io/hostname: quickstart-node}}
YAML
kubectl patch node quickstart-node --subresource=status --type=merge \
  -p '{"status":{"allocatable":{"cpu":"2","memory":"4Gi","pods":"10"},"conditions":[{"type":"Ready","status":"True"}]}}'
for size in small:100m big:8; do
  printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: quickstart/web:1, resources: {requests: {cpu: "%s"}}}]\n' \
    "${size%%:*}" "${size#*:}" | kubectl apply -f -
done
kubectl wait --for=condition=PodScheduled pod/small --timeout=20s
kubectl get pod small -o wide
kubectl wait --for=condition=PodScheduled=false pod/big --timeout=20s
kubectl get pod big -o jsonpath='{.status.conditions[0].message}{"\n"}'   # 0/1 nodes are available: 1 Insufficient cpu. ...
kubectl delete pod small big --wait=false
kubectl delete node quickstart-node
# A chart installed as a release, stored as Helm stores it (helm sees it too): upgrade, roll back, uninstall.
"$KEEL" chart create "$REG_DIR/relchart" >/dev/null 2>&1
"$KEEL" chart install demo "$REG_DIR/relchart" -n quickstart --set replicaCount=0 >/dev/null
"$KEEL" chart list -n quickstart
"$KEEL" chart upgrade demo "$REG_DIR/relchart" -n quickstart --reuse-values --set service.port=8080 >/dev/null
"$KEEL" chart rollback demo 1 -n quickstart
"$KEEL" chart history demo -n quickstart
kubectl -n quickstart get secrets -l owner=helm,name=demo
"$KEEL" chart uninstall demo -n quickstart

step "a chart through an OCI registry: packaged, pushed to the registry above, installed from oci://"
export HELM_CONFIG_HOME="$REG_DIR/helm-config" HELM_CACHE_HOME="$REG_DIR/helm-cache"
"$KEEL" chart package "$REG_DIR/relchart" -d "$REG_DIR"
"$KEEL" chart push "$REG_DIR/relchart-0.1.0.tgz" "oci://127.0.0.1:$PORT/charts"
"$KEEL" chart install fromoci "oci://127.0.0.1:$PORT/charts/relchart" --version 0.1.0 \
  -n quickstart --set replicaCount=0 >/dev/null
"$KEEL" chart list -n quickstart
"$KEEL" chart uninstall fromoci -n quickstart
unset HELM_CONFIG_HOME HELM_CACHE_HOME
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
unset KUBECONFIG

step "render a Helm chart as helm template does (values numbers are Helm's float64)"
"$KEEL" chart create "$REG_DIR/mychart" >/dev/null 2>&1
"$KEEL" chart template web "$REG_DIR/mychart" -n prod --set service.port=8080 \
  --set-literal 'podAnnotations.note=a,b=c' --show-only templates/service.yaml

step "a chart repository: package, index, serve over HTTP, add and search (Helm's repositories.yaml)"
CR_DIR="$(mktemp -d /tmp/keel-quickstart-charts.XXXXXX)"
mkdir -p "$CR_DIR/repo"
"$KEEL" chart package "$REG_DIR/mychart" -d "$CR_DIR/repo"
CR_PORT="$(free_port)"
"$KEEL" chart repo index "$CR_DIR/repo" --url "http://127.0.0.1:$CR_PORT"
(cd "$CR_DIR/repo" && exec python3 -m http.server "$CR_PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
CR_PID=$!
for _ in $(seq 50); do http_get "http://127.0.0.1:$CR_PORT/index.yaml" >/dev/null 2>&1 && break; sleep 0.1; done
HELM_CONFIG_HOME="$CR_DIR/config" HELM_CACHE_HOME="$CR_DIR/cache" "$KEEL" chart repo add local "http://127.0.0.1:$CR_PORT"
HELM_CONFIG_HOME="$CR_DIR/config" HELM_CACHE_HOME="$CR_DIR/cache" "$KEEL" chart search repo mychart --versions
kill "$CR_PID"; wait "$CR_PID" 2>/dev/null || true
rm -rf "$CR_DIR"

step "run a GitHub Actions workflow locally: keel ci (host job, busybox container job, masked secret)"
CI_DIR="$(mktemp -d /tmp/keel-quickstart-ci.XXXXXX)"
mkdir -p "$CI_DIR/.github/workflows"
cat > "$CI_DIR/.github/workflows/ci.yml" <<'YAML'
name: quickstart
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        n: [1, 2]
    outputs:
      greeting: ${{ steps.hi.outputs.greeting }}
    steps:
      - id: hi
        run: echo "greeting=hello from job ${{ matrix.n }}" >> "$GITHUB_OUTPUT"
      - run: echo "the token is $TOKEN"
        env:
          TOKEN: ${{ secrets.TOKEN }}
  in-container:
    needs: test
    runs-on: busybox-runner
    steps:
      - run: echo "${{ needs.test.outputs.greeting }}, now in $(cat /etc/hostname)"
YAML
git -C "$CI_DIR" init -q -b main
git -C "$CI_DIR" -c user.name=quickstart -c user.email=q@example.com add -A
git -C "$CI_DIR" -c user.name=quickstart -c user.email=q@example.com commit -qm ci
"$KEEL" ci run -C "$CI_DIR" -P ubuntu-latest=-self-hosted -s TOKEN=s3cret
"$KEEL" ci runs
rm -rf "$CI_DIR"

step "infrastructure as code: keel infra on a Terraform configuration (built-in providers, offline)"
INFRA_DIR="$(mktemp -d /tmp/keel-quickstart-infra.XXXXXX)"
cat > "$INFRA_DIR/main.tf" <<'TF'
resource "random_pet" "name" {}
resource "tls_private_key" "deploy" {
  algorithm = "ED25519"
}
resource "terraform_data" "server" {
  count = 2
  input = "${random_pet.name.id}-${count.index}"
}
output "servers" {
  value = terraform_data.server[*].output
}
output "deploy_key" {
  value = tls_private_key.deploy.public_key_openssh
}
TF
(cd "$INFRA_DIR" && "$KEEL" infra init >/dev/null \
  && "$KEEL" infra plan -out plan.bin >/dev/null \
  && PLAN_JSON="$("$KEEL" infra show -json plan.bin)" && echo "${PLAN_JSON:0:160} … (terraform's JSON plan)" \
  && "$KEEL" infra apply plan.bin && "$KEEL" infra destroy -auto-approve)
rm -rf "$INFRA_DIR"

step "keel infra with the docker provider: a network and a container on keel's own engine"
DOCKER_TF_DIR="$(mktemp -d /tmp/keel-quickstart-docker-tf.XXXXXX)"
cat > "$DOCKER_TF_DIR/main.tf" <<'TF'
resource "docker_network" "qs" {
  name = "qs-tf"
}
resource "docker_container" "web" {
  name    = "qs-tf-web"
  image   = "busybox:latest"
  command = ["httpd", "-f", "-p", "80", "-h", "/etc"]
  ports {
    internal = 80
    ip       = "127.0.0.1"
  }
  networks_advanced {
    name = docker_network.qs.name
  }
}
output "port" {
  value = docker_container.web.ports[0].external
}
TF
(cd "$DOCKER_TF_DIR" && "$KEEL" infra init >/dev/null \
  && "$KEEL" infra apply -auto-approve -no-color | tail -4 \
  && TF_PORT="$("$KEEL" infra output -raw port)" \
  && for _ in $(seq 50); do http_get "http://127.0.0.1:$TF_PORT/hostname" 2>/dev/null && break; sleep 0.1; done \
  && "$KEEL" infra destroy -auto-approve -no-color | tail -1)
rm -rf "$DOCKER_TF_DIR"

step "keel infra pushes an image to the local registry (docker_registry_image) and deletes it on destroy"
REGTF_DIR="$(mktemp -d /tmp/keel-quickstart-registry-tf.XXXXXX)"
"$KEEL" tag busybox "127.0.0.1:$PORT/quickstart/tf:1"
cat > "$REGTF_DIR/main.tf" <<TF
resource "docker_registry_image" "bb" {
  name = "127.0.0.1:$PORT/quickstart/tf:1"
}
output "digest" {
  value = docker_registry_image.bb.sha256_digest
}
TF
(cd "$REGTF_DIR" && "$KEEL" infra init >/dev/null \
  && "$KEEL" infra apply -auto-approve -no-color | tail -3 \
  && "$KEEL" infra destroy -auto-approve -no-color | tail -1)
"$KEEL" rmi "127.0.0.1:$PORT/quickstart/tf:1" >/dev/null
rm -rf "$REGTF_DIR"

step "keel agent: keel server's own node runs a Deployment; its pod answers on the node's bridge"
NODE_ROOT="$(mktemp -d /tmp/keel-quickstart-node.XXXXXX)"
NODE_API="$(free_port)"
node_down() {
  KUBECONFIG="$NODE_ROOT/kubeconfig" kubectl delete deployment hello --ignore-not-found >/dev/null 2>&1 || true
  KUBECONFIG="$NODE_ROOT/kubeconfig" kubectl delete rollout web --ignore-not-found >/dev/null 2>&1 || true
  KUBECONFIG="$NODE_ROOT/kubeconfig" kubectl wait --for=delete pod -l 'app in (hello,web)' --timeout=60s >/dev/null 2>&1 || true
  kill "$NODE_SERVER" 2>/dev/null || true
  wait "$NODE_SERVER" 2>/dev/null || true
  for c in $("$KEEL" --root "$NODE_ROOT" ps -aq 2>/dev/null); do "$KEEL" --root "$NODE_ROOT" rm -f "$c" >/dev/null 2>&1 || true; done
  "$KEEL" --root "$NODE_ROOT" network rm keel-pods >/dev/null 2>&1 || true
  rm -rf "$NODE_ROOT"
}
"$KEEL" --root "$NODE_ROOT" image seed-busybox >/dev/null   # the node's image store
"$KEEL" --root "$NODE_ROOT" server --node-name quickstart --listen "127.0.0.1:$NODE_API" \
  --write-kubeconfig "$NODE_ROOT/kubeconfig" >"$NODE_ROOT/server.log" 2>&1 &
NODE_SERVER=$!
trap 'node_down; kill $REG_PID $SERVER_PID 2>/dev/null; rm -rf "$REG_DIR" "$APP_DIR"' EXIT
export KUBECONFIG="$NODE_ROOT/kubeconfig"
for _ in $(seq 100); do kubectl get node quickstart >/dev/null 2>&1 && break; sleep 0.2; done
kubectl wait --for=condition=Ready node/quickstart --timeout=60s
kubectl create deployment hello --image=busybox:latest --port=8080 \
  -- sh -c 'echo hello from a keel pod >/tmp/index.html && exec httpd -f -p 8080 -h /tmp'
kubectl rollout status deployment/hello --timeout=120s
kubectl get pods -l app=hello -o wide
http_get "http://$(kubectl get pods -l app=hello -o jsonpath='{.items[0].status.podIP}'):8080/"
# The kubelet's events (Pulled, Created, Started), as kubectl describe shows them.
for _ in $(seq 50); do kubectl describe pods -l app=hello | grep -q "Started container" && break; sleep 0.2; done
kubectl describe pods -l app=hello | sed -n '/^Events:/,$p'

step "cluster DNS: the Service's name answers on the pods' nameserver (the bridge's gateway)"
kubectl expose deployment hello --port=80 --target-port=8080
HELLO_IP="$(kubectl get svc hello -o jsonpath='{.spec.clusterIP}')"
GW="$(kubectl get node quickstart -o jsonpath='{.spec.podCIDR}' | sed 's|0/24|1|')"
for _ in $(seq 50); do busybox nslookup hello.default.svc.cluster.local "$GW" 2>/dev/null | grep -q "$HELLO_IP" && break; sleep 0.2; done
busybox nslookup hello.default.svc.cluster.local "$GW"

step "Services: the ClusterIP and a NodePort on 127.0.0.1 reach the pod (the node's nftables table)"
for _ in $(seq 50); do timeout 2 busybox wget -q -O- "http://$HELLO_IP/" >/dev/null 2>&1 && break; sleep 0.2; done
http_get "http://$HELLO_IP/"
kubectl patch svc hello -p '{"spec":{"type":"NodePort"}}'
HELLO_NP="$(kubectl get svc hello -o jsonpath='{.spec.ports[0].nodePort}')"
for _ in $(seq 50); do timeout 2 busybox wget -q -O- "http://127.0.0.1:$HELLO_NP/" >/dev/null 2>&1 && break; sleep 0.2; done
http_get "http://127.0.0.1:$HELLO_NP/"
nft list map ip keel-svc-quickstart services
# Node ports are allocated against the Services that exist (also after a
# server restart): another Service asking for this one is refused.
if kubectl create service nodeport taken --tcp=80:8080 --node-port="$HELLO_NP" 2>"$APP_DIR/taken.err"; then
  echo "node port $HELLO_NP handed out twice" >&2; exit 1
fi
cat "$APP_DIR/taken.err"

step "resource metrics and autoscaling: kubectl top, kubectl autoscale, kubectl get hpa"
kubectl set resources deployment hello --requests=cpu=50m
kubectl rollout status deployment/hello --timeout=120s
for _ in $(seq 100); do kubectl top pod -l app=hello >/dev/null 2>&1 && break; sleep 0.2; done
kubectl top pod -l app=hello
kubectl top node
kubectl autoscale deployment hello --cpu-percent=50 --min=1 --max=3
for _ in $(seq 150); do kubectl get hpa hello -o jsonpath='{.status.currentMetrics}' | grep -q cpu && break; sleep 0.2; done
kubectl get hpa hello
# Requests per second from the gateways keel server scrapes (a Pods metric, no adapter to install).
kubectl delete hpa hello
kubectl apply -f - <<'YAML'
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hello}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: hello}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Pods
    pods:
      metric: {name: keel_gateway_requests_per_second}
      target: {type: AverageValue, averageValue: "10"}
YAML
for _ in $(seq 100); do kubectl get hpa hello -o jsonpath='{.status.conditions}' | grep -q ScalingActive && break; sleep 0.2; done
kubectl get hpa hello -o jsonpath='{.status.conditions[?(@.type=="ScalingActive")].message}{"\n"}'

step "progressive delivery: a canary Rollout of the web image (Argo's kinds, run by keel), promoted with keel rollout"
"$KEEL" build -q -t quickstart/web:2 --build-arg GREETING=hi "$APP_DIR" >/dev/null
"$KEEL" save -o "$APP_DIR/web.tar" quickstart/web:1 quickstart/web:2
"$KEEL" --root "$NODE_ROOT" load -i "$APP_DIR/web.tar"   # into the node's image store
kubectl apply -f - <<'YAML'
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "quickstart/web:1", imagePullPolicy: IfNotPresent}]}
  strategy:
    canary: {steps: [{setWeight: 50}, {pause: {}}]}
YAML
"$KEEL" rollout status web --timeout 120s   # the first version goes straight to Healthy
"$KEEL" rollout set image web web=quickstart/web:2
kubectl wait --for=jsonpath='{.status.phase}'=Paused rollout/web --timeout=120s
"$KEEL" rollout get rollout web   # step 1/2 done: 50% canary, paused until promoted
"$KEEL" rollout promote web
"$KEEL" rollout status web --timeout 120s
STABLE="$(kubectl get rollout web -o jsonpath='{.status.stableRS}')"
http_get "http://$(kubectl get pods -l "app=web,rollouts-pod-template-hash=$STABLE" -o jsonpath='{.items[0].status.podIP}'):80/"
node_down   # SIGTERM: the agent removes its table
trap 'kill $REG_PID $SERVER_PID 2>/dev/null; rm -rf "$REG_DIR" "$APP_DIR"' EXIT

step "keel server's Prometheus API: PromQL over the counters it scrapes (here from a python target)"
PROM_DIR="$(mktemp -d /tmp/keel-quickstart-prom.XXXXXX)"
TARGET_PORT="$(free_port)"; PROM_API="$(free_port)"; PROM_PORT="$(free_port)"
python3 - "$TARGET_PORT" <<'PY' &
import http.server, sys, time
start = time.time()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # a counter rising by 10 a second
        body = f"demo_requests_total{{path=\"/\"}} {int((time.time() - start) * 10)}\n".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
TARGET_PID=$!
"$KEEL" --root "$PROM_DIR" server --disable-agent --disable-dns --listen "127.0.0.1:$PROM_API" \
  --metrics-listen "127.0.0.1:$PROM_PORT" --metrics-target "demo=http://127.0.0.1:$TARGET_PORT/metrics" \
  --metrics-scrape-interval 1s --write-kubeconfig "$PROM_DIR/kubeconfig" >"$PROM_DIR/server.log" 2>&1 &
PROM_SERVER=$!
trap 'kill $TARGET_PID $PROM_SERVER 2>/dev/null; rm -rf "$PROM_DIR"; kill $REG_PID $SERVER_PID 2>/dev/null; rm -rf "$REG_DIR" "$APP_DIR"' EXIT
for _ in $(seq 100); do [ -s "$PROM_DIR/server/tokens" ] && break; sleep 0.1; done
promql() {
  curl -sS --cacert "$PROM_DIR/server/tls/ca.crt" \
    -H "Authorization: Bearer $(awk '$2 == "admin" {print $1}' "$PROM_DIR/server/tokens")" \
    "https://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1"; echo
}
sleep 6   # a few scrapes
promql 'up'
promql 'rate(demo_requests_total[5s])'   # about 10 per second

step "an Argo AnalysisRun judged by keel's own PromQL (keel runs Argo's analysis itself)"
KUBECONFIG="$PROM_DIR/kubeconfig" kubectl apply -f - <<'YAML'
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {name: demo-rate, namespace: default}
spec:
  metrics:
  - name: rate
    interval: 1s
    count: 3
    successCondition: len(result) == 1 && result[0] > 5
    provider:
      prometheus:
        address: http://prometheus.keel-system.svc:9090
        query: sum(rate(demo_requests_total[5s]))
YAML
KUBECONFIG="$PROM_DIR/kubeconfig" kubectl wait --for=jsonpath='{.status.phase}'=Successful analysisrun/demo-rate --timeout=30s
KUBECONFIG="$PROM_DIR/kubeconfig" kubectl get analysisrun demo-rate \
  -o jsonpath='{.status.phase}: {.status.metricResults[0].measurements[*].value}{"\n"}'
kill $TARGET_PID $PROM_SERVER 2>/dev/null; wait $PROM_SERVER 2>/dev/null || true; rm -rf "$PROM_DIR"
trap 'kill $REG_PID $SERVER_PID 2>/dev/null; rm -rf "$REG_DIR" "$APP_DIR"' EXIT

step "progressive delivery: keel rollout lint checks a Rollout as Argo's kubectl plugin does"
cat > "$APP_DIR/rollout.yaml" <<'YAML'
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.local/web:2}]}
  strategy:
    canary: {maxSurge: 0, maxUnavailable: 0, steps: [{setWeight: 25}, {pause: {}}]}
YAML
"$KEEL" rollout lint -f "$APP_DIR/rollout.yaml" || echo "(refused, as Argo's lint refuses it)"
sed -i 's/maxSurge: 0/maxSurge: 1/' "$APP_DIR/rollout.yaml"
"$KEEL" rollout lint -f "$APP_DIR/rollout.yaml" && echo "valid"

step "clean up: idle networks give back their Linux bridges and iptables rules (the next container brings them back)"
"$KEEL" network prune -f
ip -br link show type bridge | grep keel || echo "no keel bridge left"

printf '\nDone. State is under %s.\n' "${KEEL_ROOT:-/var/lib/keel}"
