"""deploy/kubernetes/example/: the example overlay builds, validates, and makes a reconnect
possible on Kubernetes (a writable token, a callback the account holder's browser reaches)."""

import os
import stat
import subprocess
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from agent.config.loader import parse_config
from agent.plugins import load_plugins
from agent.reconnect import CALLBACK_PATH
from tests.helpers import REPO, require_program
from tests.test_deploy_kubernetes import (
    BASE,
    KUBERNETES_VERSIONS,
    OPERATOR_KINDS,
    container,
    mounted_config_map,
    only,
    pod,
)

OVERLAY = REPO / "deploy" / "kubernetes" / "example"


@pytest.fixture(scope="module")
def rendered():
    kubectl = require_program("kubectl")
    result = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_kinds_validate_against_the_kubernetes_schemas(rendered, version):
    kinds = {d["kind"] for d in rendered}
    assert {"Ingress", "StatefulSet", "NetworkPolicy"} <= kinds
    for doc in rendered:
        if doc["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_runbook_base_url_placeholder_is_replaced(rendered):
    base = yaml.safe_load((BASE / "prometheusrule.yaml").read_text())
    [record] = base["spec"]["groups"][0]["rules"][:1]  # where the overlay's patch points
    assert record["record"] == "channel_alerts_runbook_info"
    assert record["labels"]["base_url"].startswith("https://git.example.com/")
    [patched] = only(rendered, "PrometheusRule")["spec"]["groups"][0]["rules"][:1]
    assert patched["record"] == "channel_alerts_runbook_info"
    assert patched["labels"]["base_url"] != record["labels"]["base_url"]
    for kind in OPERATOR_KINDS:
        assert only(rendered, kind)["metadata"]["labels"]["release"]


def test_one_replica_checks_every_account(rendered):
    statefulset = only(rendered, "StatefulSet")
    env = {e["name"]: e.get("value") for e in container(rendered)["env"]}
    assert statefulset["spec"]["replicas"] == 1 and env["SHARD_COUNT"] == "1"


def test_tokens_are_on_the_writable_volume_and_the_callback_reaches_the_agent(rendered,
                                                                              tmp_path):
    agent, spec = container(rendered), pod(rendered)["spec"]
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    [(_, text)] = mounted_config_map(rendered, {"configMap": {"name": next(
        v["configMap"]["name"] for v in spec["volumes"] if v["name"] == "config")}})[
        "data"].items()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "amazon_ads_client_secret").write_text("x")
    state = tmp_path / "state"
    config = parse_config(
        text.replace(mounts["credentials"]["mountPath"], str(secrets))
            .replace(mounts["state"]["mountPath"], str(state)),
        load_plugins().channels, environ={"AMAZON_ADS_CLIENT_ID": "x"})
    assert not mounts["state"].get("readOnly") and mounts["credentials"]["readOnly"]
    for account in config.accounts():  # where a reconnect writes the new token
        assert account.settings["refresh_token"].path.parent == state / "tokens"

    # the redirect_uri is the Ingress's only route, to a Service of the agent's port
    redirect = urlsplit(config.channels["amazon_ads"].settings["redirect_uri"])
    ingress = only(rendered, "Ingress")["spec"]
    [rule] = ingress["rules"]
    [path] = rule["http"]["paths"]
    assert (redirect.scheme, redirect.hostname, redirect.path) == (
        "https", rule["host"], CALLBACK_PATH)
    assert path["path"] == CALLBACK_PATH and path["pathType"] == "Exact"
    assert rule["host"] in ingress["tls"][0]["hosts"]
    [service] = [d for d in rendered if d["kind"] == "Service"
                 and d["metadata"]["name"] == path["backend"]["service"]["name"]]
    [port] = service["spec"]["ports"]
    assert port["name"] == path["backend"]["service"]["port"]["name"]
    assert port["targetPort"] in {p["name"] for p in agent["ports"]}
    selector = service["spec"]["selector"]
    name = only(rendered, "StatefulSet")["metadata"]["name"]
    assert selector["statefulset.kubernetes.io/pod-name"] == f"{name}-0"
    assert {k: v for k, v in selector.items() if "pod-name" not in k}.items() <= (
        pod(rendered)["metadata"]["labels"].items())

    # the ingress controller may connect (Prometheus still may too)
    policy = only(rendered, "NetworkPolicy")["spec"]
    allowed = {rule["from"][0]["namespaceSelector"]["matchLabels"][
        "kubernetes.io/metadata.name"] for rule in policy["ingress"]}
    assert allowed == {"monitoring", "ingress-nginx"}
    assert all([p["port"] for p in r["ports"]] == ["http-metrics"] for r in policy["ingress"])


def test_the_seed_copies_each_token_once_and_never_over_a_reconnected_one(rendered, tmp_path):
    """The init container's script, run for real: a token on the volume (perhaps a
    reconnected one) stays; a missing or empty one is copied from the Secret, mode 0600."""
    [init] = pod(rendered)["spec"]["initContainers"]
    agent = container(rendered)
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]} == {
        k: mounts[k] for k in ("state", "credentials")}
    assert init["image"] == agent["image"]
    assert init["securityContext"] == agent["securityContext"]
    script = init["command"][-1]
    secrets, state = tmp_path / "secrets", tmp_path / "state"
    secrets.mkdir()
    (secrets / "..data").mkdir()  # how the kubelet lays out a Secret: symlinks into ..data
    for name, value in {"acme-us": "seed-us", "acme-eu": "seed-eu", "new": "seed-new"}.items():
        (secrets / "..data" / f"{name}.refresh_token").write_text(value)
        (secrets / f"{name}.refresh_token").symlink_to(f"..data/{name}.refresh_token")
    (secrets / "amazon_ads_client_secret").write_text("not a token")
    (state / "tokens").mkdir(parents=True)
    (state / "tokens" / "acme-us.refresh_token").write_text("reconnected")
    (state / "tokens" / "acme-eu.refresh_token").write_text("")  # empty: seeded again
    script = (script.replace(mounts["credentials"], str(secrets))
              .replace(mounts["state"], str(state)))
    for _ in range(2):  # a restart runs it again
        result = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result.stderr
    tokens = {p.name: p.read_text() for p in (state / "tokens").iterdir()}
    assert tokens == {"acme-us.refresh_token": "reconnected",
                      "acme-eu.refresh_token": "seed-eu", "new.refresh_token": "seed-new"}
    for name in ("acme-eu.refresh_token", "new.refresh_token"):
        path = state / "tokens" / name
        assert not path.is_symlink() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
