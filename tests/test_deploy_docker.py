"""deploy/docker/Dockerfile and /.dockerignore keep their promises.

No image can be built here (no registry, no daemon), so the Dockerfile is parsed and checked,
and its build stage's install is replayed on exactly the files the build context would hold.
"""

import functools
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from dockerfile_parse import DockerfileParser

from agent.config.loader import AgentSettings
from tests.helpers import REPO

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
STATE_DIR = "/var/lib/channel-agent"
DEFAULT_PORT = AgentSettings.listen_address.rpartition(":")[2]
SECRET_WORDS = re.compile(r"secret|token|passw|credential|api_?key|private", re.IGNORECASE)


@pytest.fixture(scope="module")
def stages():
    """The Dockerfile's instructions, one list per stage."""
    parser = DockerfileParser(str(DOCKERFILE))
    result: list[list[dict]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if result and instruction["instruction"] != "COMMENT":
            result[-1].append(instruction)
    return result


def values(stage, name):
    return [i["value"] for i in stage if i["instruction"] == name]


def exec_form(value: str) -> list[str]:
    assert value.lstrip().startswith("["), f"use the exec form (JSON array): {value}"
    return json.loads(value)


def test_multi_stage_on_one_pinned_slim_python_base():
    parser = DockerfileParser(str(DOCKERFILE))
    assert parser.is_multistage
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    froms = [line.split()[1] for line in DOCKERFILE.read_text().splitlines()
             if line.startswith("FROM ")]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]  # the venv moves between them


def test_runtime_stage_runs_as_a_numeric_non_root_user(stages):
    runtime = stages[-1]
    [user] = values(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    # USER is the last word on who runs: no instruction after it switches back
    assert values(runtime[[i["instruction"] for i in runtime].index("USER"):], "USER") == [user]


def test_state_volume_port_healthcheck_and_entrypoint(stages):
    runtime = stages[-1]
    assert STATE_DIR in exec_form(values(runtime, "VOLUME")[0])
    assert values(runtime, "EXPOSE") == [DEFAULT_PORT]
    [healthcheck] = values(runtime, "HEALTHCHECK")
    assert f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy" in healthcheck
    assert exec_form(healthcheck.split("CMD", 1)[1])[0] == "python"  # no curl in slim images
    assert exec_form(values(runtime, "ENTRYPOINT")[0]) == ["channel-agent"]
    # reachable from outside the container: every interface, the default port, and so a web
    # config (the image's own, empty: reads open, state changes refused)
    assert exec_form(values(runtime, "CMD")[0]) == [
        "run", "--web.listen-address", f":{DEFAULT_PORT}",
        "--web.config.file", "/etc/channel-agent/web.yml", "--web.read-without-auth"]
    run_steps = " ".join(values(runtime, "RUN"))
    assert "> /etc/channel-agent/web.yml" in run_steps
    env = " ".join(values(runtime, "ENV"))
    assert "CHANNEL_AGENT_CONFIG=/etc/channel-agent/config.yaml" in env


def test_no_secret_is_baked_in(stages):
    for stage in stages:
        for instruction in stage:
            if instruction["instruction"] in ("ENV", "ARG", "LABEL"):
                names = re.findall(r"(\w+)=", instruction["value"])
                assert not [n for n in names if SECRET_WORDS.search(n)], instruction["value"]
            if instruction["instruction"] in ("COPY", "ADD"):
                assert not SECRET_WORDS.search(instruction["value"]), instruction["value"]
                assert "config.yaml" not in instruction["value"]
    context = build_context()
    assert {path.parts[0] for path in context} == {"pyproject.toml", "README.md", "agent",
                                                   "plugins"}
    assert {path.suffix for path in context} <= {".py", ".toml", ".md"}


def test_copied_paths_exist_and_are_in_the_build_context(stages):
    context = build_context()
    copies = [i["value"].split() for i in stages[0] if i["instruction"] == "COPY"]
    assert copies
    for *sources, _target in copies:
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: not in the repository"
            inside = [p for p in context if p == PurePosixPath(source.rstrip("/"))
                      or PurePosixPath(source.rstrip("/")) in p.parents]
            assert inside, f"COPY {source}: excluded by .dockerignore"
    installed = pip_install_args(stages, AGENT_EXTRAS="")
    assert {str(PurePosixPath(p)) for p in installed} == {
        ".", "plugins/amazon_lwa", "plugins/amazon_ads", "plugins/amazon_sp",
        "plugins/shopify"}


def test_the_core_is_installed_with_the_aws_extra_unless_the_build_says_otherwise(stages):
    """The aws_secrets_manager store needs boto3, an optional extra of the core: the image
    has it by default (AGENT_EXTRAS=aws), and --build-arg AGENT_EXTRAS= leaves it out."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(req.startswith("boto3") for req in extras["aws"])
    assert pip_install_args(stages)[0] == ".[aws]"
    assert pip_install_args(stages, AGENT_EXTRAS="")[0] == "."


def pip_install_args(stages, **build_args: str) -> list[str]:
    """The arguments of the build stage's pip install as its shell sees them, with the stage's
    ARG defaults, or ``build_args`` (``--build-arg``)."""
    args = dict(arg.partition("=")[::2] for arg in values(stages[0], "ARG"))
    args.update(build_args)
    run = " ".join(values(stages[0], "RUN"))
    words = run.split("pip install", 1)[1].split("&&")[0]
    result = subprocess.run(["sh", "-c", f"printf '%s\\n' {words}"], env=args,
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_the_build_stage_install_packages_every_module(tmp_path):
    """pip builds the core and the plugin from the build context alone (what COPY brings),
    and the wheels hold every module of the repository and the plugin's entry point."""
    context = tmp_path / "context"
    for path in build_context():
        target = context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / path).read_bytes())
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
         ".", "./plugins/amazon_lwa", "./plugins/amazon_ads", "./plugins/amazon_sp",
         "./plugins/shopify"],
        cwd=context, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = set()
    entry_points = ""
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            names |= set(archive.namelist())
            entry_points += "".join(archive.read(n).decode() for n in archive.namelist()
                                    if n.endswith("entry_points.txt"))
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "agent").rglob("*.py")}
    for name in ("amazon_lwa", "amazon_ads", "amazon_sp", "shopify"):
        plugin = REPO / "plugins" / name
        modules |= {p.relative_to(plugin).as_posix()
                    for p in (plugin / f"channel_agent_{name}").rglob("*.py")}
    assert modules - names == set()
    assert "channel-agent = agent.cli:main" in entry_points
    assert "amazon_ads = channel_agent_amazon_ads.plugin" in entry_points
    assert "amazon_sp = channel_agent_amazon_sp.plugin" in entry_points
    assert "shopify = channel_agent_shopify.plugin" in entry_points


# --- .dockerignore ------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, pattern) per line of /.dockerignore."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.lstrip("!").strip("/"))))
    return rules


@functools.cache
def build_context() -> tuple[PurePosixPath, ...]:
    """Every file of the repository that `docker build .` would send, per /.dockerignore."""
    rules = dockerignore_rules()
    files = []
    for root, dirs, names in os.walk(REPO):
        base = PurePosixPath(Path(root).relative_to(REPO).as_posix())
        # skip the big ignored trees (.git, .venv) unless an exception re-includes files there
        dirs[:] = [d for d in dirs if not _ignored(base / d, rules) or any(
            negated and pattern.pattern.startswith(re.escape(str(base / d))) for negated, pattern
            in rules)]
        files += [base / name for name in names if not _ignored(base / name, rules)]
    return tuple(files)


def _pattern(glob: str) -> re.Pattern[str]:
    """Docker's pattern syntax: * within one path element, ** across any, ? one character."""
    regex = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif glob[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif glob[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(glob[i]), i + 1
    return re.compile(regex)


def _ignored(path: PurePosixPath, rules) -> bool:
    """The last rule matching the path or one of its parent directories decides."""
    candidates = [str(p) for p in reversed(path.parents) if str(p) != "."] + [str(path)]
    ignored = False
    for negated, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_matching_follows_docker_rules():
    rules = [(False, _pattern("*")), (True, _pattern("agent")),
             (False, _pattern("**/__pycache__"))]
    assert _ignored(PurePosixPath("config.yaml"), rules)
    assert _ignored(PurePosixPath("secrets/acme.refresh_token"), rules)
    assert not _ignored(PurePosixPath("agent/cli/run.py"), rules)
    assert _ignored(PurePosixPath("agent/__pycache__/x.pyc"), rules)
    assert _ignored(PurePosixPath("__pycache__/x.pyc"), rules)


def test_local_configs_tokens_state_and_venvs_stay_out():
    planted = ["config.yaml", "secrets/acme-us.refresh_token", "var/agent.db", ".venv/bin/python",
               "plugins/amazon_ads/tests/test_check.py",
               "plugins/shopify/tests/test_shopify_classify.py",
               "agent/__pycache__/web.cpython-311.pyc",
               ".git/config", "deploy/kubernetes/base/secret.example.yaml"]
    rules = dockerignore_rules()
    for path in planted:  # whether or not this checkout has them
        assert _ignored(PurePosixPath(path), rules), path
    context = {str(p) for p in build_context()}
    assert "agent/checks/sharding.py" in context and "plugins/amazon_ads/pyproject.toml" in context
