"""deploy/: every manifest parses and carries what its tool needs, and the files agree with each
other, with README.md's "Running on a cluster" section and with the CLI.

No image is built and no cluster started: Docker, Kubernetes and the machines are not here. The
Ray cluster launcher config goes through the same preparation and JSON-schema validation that
`ray up` runs before it contacts any machine; `docker compose config` runs when Docker Compose is
installed.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT_SERVICES = ("ray-head", "ray-worker", "api")
SECTION_TITLE = "## Running on a cluster"


# --------------------------------------------------------------------------- helpers


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _load(path: Path) -> dict[str, Any]:
    (doc,) = _load_all(path)
    return doc


def _by_kind(path: Path) -> dict[str, dict[str, Any]]:
    docs = _load_all(path)
    kinds = [d["kind"] for d in docs]
    assert len(set(kinds)) == len(kinds), f"{path.name}: one document per kind expected, got {kinds}"
    return {d["kind"]: d for d in docs}


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    assert SECTION_TITLE in text, f"README.md has no {SECTION_TITLE!r} section"
    body = text.split(SECTION_TITLE, 1)[1]
    return body.split("\n## ", 1)[0]


def _readme_documents(command: str) -> None:
    """`command` appears in the README section (whitespace-insensitive: it may wrap)."""
    squash = lambda s: " ".join(s.split())  # noqa: E731
    assert squash(command) in squash(_section()), f"README's {SECTION_TITLE!r} lacks {command!r}"


def _ray_pin() -> str:
    for dep in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(r"ray(\[[^\]]*\])?==(\S+)", dep.replace(" ", ""))
        if m:
            return m.group(2)
    raise AssertionError("pyproject.toml pins no ray version")


def _torch_pin() -> str:
    """The torch the README installs the project with (`pip install torch==X -e .`)."""
    pins = set(re.findall(r"pip install (?:-q )?torch==(\S+) -e ", (ROOT / "README.md").read_text()))
    assert len(pins) == 1, f"README installs torch at {pins or 'no pinned version'}"
    return pins.pop()


def _images() -> dict[str, str]:
    """Dockerfile path -> the image tag the README builds from it."""
    builds = re.findall(r"docker build -t (\S+) (?:--build-arg \S+ )?-f (deploy/\S+) \.", _section())
    found = {dockerfile: tag for tag, dockerfile in builds}
    assert set(found) == {"deploy/Dockerfile", "deploy/Dockerfile.cuda"}, found
    return found


def _cpu_image() -> str:
    return _images()["deploy/Dockerfile"]


def _cuda_image() -> str:
    return _images()["deploy/Dockerfile.cuda"]


def _command_line(cmd: str | list[str]) -> str:
    """A compose/k8s command as one shell line (`sh -c "..."` unwrapped)."""
    if isinstance(cmd, str):
        return cmd
    if cmd[:2] in (["sh", "-c"], ["bash", "-c"], ["/bin/sh", "-c"], ["/bin/bash", "-lc"]):
        return cmd[2]
    return shlex.join(cmd)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --------------------------------------------------------------------------- every file


DEPLOY_YAML = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_deploy_has_the_issue_s_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    assert {"Dockerfile", "Dockerfile.cuda", "docker-compose.yml", "ray-cluster.yaml",
            "kuberay/raycluster.yaml", "kuberay/rayjob.yaml"} <= names


@pytest.mark.parametrize("path", DEPLOY_YAML, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses_into_mappings(path: Path) -> None:
    docs = _load_all(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) and d for d in docs), f"{path}: every document must be a non-empty mapping"


def test_readme_images_are_the_project_version() -> None:
    version = PYPROJECT["project"]["version"]
    assert _cpu_image() == f"hwnas:{version}-cpu"
    assert _cuda_image() == f"hwnas:{version}-cuda"


# --------------------------------------------------------------------------- Dockerfiles


def _instructions(path: Path) -> list[str]:
    """Dockerfile instructions, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                           if not line.lstrip().startswith("#")))
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_installs_the_pinned_project(name: str) -> None:
    ins = _instructions(DEPLOY / name)
    assert ins[0].startswith("FROM "), ins[0]
    runs = " && ".join(i for i in ins if i.startswith("RUN "))
    torch = _torch_pin()
    # torch from the PyTorch index first, then the project with the same pin, as the README does.
    index = r"--index-url https://download\.pytorch\.org/whl/\S+"
    assert re.search(rf"pip install torch=={re.escape(torch)} {index}", runs)
    assert f"pip install torch=={torch} -e ." in runs
    assert f'"ray[default,train]=={_ray_pin()}"' in runs or f"ray[default]=={_ray_pin()}" in runs
    # The Ray cluster launcher rsyncs into the container; KubeRay's default probes call wget.
    assert re.search(r"apt-get install .*\brsync\b", runs) and re.search(r"apt-get install .*\bwget\b", runs)
    assert any(i.startswith("COPY ") for i in ins)
    assert any(i.startswith(("CMD ", "ENTRYPOINT ")) for i in ins)
    users = [i.split()[1] for i in ins if i.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image should not run as root"


def test_cpu_and_cuda_dockerfiles_differ_only_in_torch() -> None:
    cpu, cuda = (_instructions(DEPLOY / n) for n in ("Dockerfile", "Dockerfile.cuda"))
    assert "download.pytorch.org/whl/cpu" in " ".join(cpu)
    arg = next(i for i in cuda if i.startswith("ARG TORCH_CUDA="))
    assert re.fullmatch(r"ARG TORCH_CUDA=cu\d+", arg), arg
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in " ".join(cuda)

    def common(ins: list[str]) -> list[str]:
        ins = [i for i in ins if not i.startswith("ARG TORCH_CUDA")]
        ins = [re.sub(r"/whl/(cpu|\$\{TORCH_CUDA\})", "/whl/X", i) for i in ins]
        return [re.sub(r" NVIDIA_\S+", "", i) for i in ins]

    assert common(cpu) == common(cuda)
    froms = {i for i in cpu + cuda if i.startswith("FROM ")}
    assert len(froms) == 1, f"one base (one Python for the whole Ray cluster): {froms}"


def test_dockerignore_keeps_what_the_image_installs() -> None:
    patterns = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = ["pyproject.toml", "README.md"] + [p.rstrip("*") for p in packages]
    for name in needed:
        hits = [p for p in patterns if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name, p.lstrip("*/"))]
        assert not hits, f".dockerignore {hits} drops {name}, which the image installs"
        assert (ROOT / name).exists(), name
    assert ".git" in patterns and ".venv" in patterns


# --------------------------------------------------------------------------- docker compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(DEPLOY / "docker-compose.yml")


def test_compose_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", *PROJECT_SERVICES}
    assert re.fullmatch(r"postgres:15(\.\d+)?", services["postgres"]["image"])
    for name in PROJECT_SERVICES:
        svc = services[name]
        assert svc["image"] == _cpu_image(), name
        build = svc["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert svc["command"], name


def test_compose_commands_are_the_documented_ones(compose: dict[str, Any]) -> None:
    services = compose["services"]
    head = _command_line(services["ray-head"]["command"])
    worker = _command_line(services["ray-worker"]["command"])
    api = _command_line(services["api"]["command"])
    assert head.startswith("ray start --head ") and "--block" in head and "--dashboard-host=0.0.0.0" in head
    gcs_port = re.search(r"--port=(\d+)", head).group(1)
    assert worker == f"ray start --address=ray-head:{gcs_port} --block"
    assert re.fullmatch(r"nas db upgrade && nas serve --host 0\.0\.0\.0 --port (\d+)", api), api
    api_port = re.search(r"--port (\d+)", api).group(1)
    assert f"{api_port}:{api_port}" in services["api"]["ports"]
    for cmd in (head, worker, api):
        _readme_documents(cmd)


def test_compose_environment_wires_database_ray_and_tokens(compose: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    services = compose["services"]
    pg = services["postgres"]["environment"]
    urls = {services[n]["environment"]["NAS_DATABASE_URL"] for n in PROJECT_SERVICES}
    assert len(urls) == 1, f"every driver must use the same database: {urls}"
    url = make_url(urls.pop())
    assert url.drivername == "postgresql+psycopg" and url.host == "postgres" and url.port == 5432
    assert (url.username, url.password, url.database) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])

    api = services["api"]["environment"]
    assert api["NAS_RAY_ADDRESS"] == "http://ray-head:8265"
    assert "8265:8265" in services["ray-head"]["ports"], "the head publishes the Jobs API"
    assert "NAS_API_TOKENS" in api
    _readme_documents(f"NAS_RAY_ADDRESS={api['NAS_RAY_ADDRESS']}")
    _readme_documents(f"--address {api['NAS_RAY_ADDRESS']}")

    homes = {services[n]["environment"]["NAS_HOME"] for n in PROJECT_SERVICES}
    assert len(homes) == 1
    home = homes.pop()
    for name in PROJECT_SERVICES:
        mounts = dict(v.split(":", 1)[::-1] for v in services[name]["volumes"])
        assert home in mounts and mounts[home] in compose["volumes"], f"{name}: NAS_HOME is not shared"
    for vol in services["postgres"]["volumes"]:
        assert vol.split(":", 1)[0] in compose["volumes"]


def test_compose_starts_services_when_their_dependencies_are_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    expected = {"ray-head": {"postgres"}, "ray-worker": {"ray-head"}, "api": {"postgres", "ray-head"}}
    for name, deps in expected.items():
        depends = services[name]["depends_on"]
        assert set(depends) == deps, name
        for dep in deps:
            assert depends[dep]["condition"] == "service_healthy", (name, dep)
            assert services[dep]["healthcheck"]["test"], dep


def _docker_compose() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            return cmd
    return None


@pytest.mark.skipif(_docker_compose() is None, reason="Docker Compose is not installed")
def test_docker_compose_config_accepts_the_file() -> None:
    env = dict(os.environ, NAS_API_TOKENS="tok:alice")
    out = subprocess.run([*_docker_compose(), "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr


# --------------------------------------------------------------------------- KubeRay / Kubernetes


@pytest.fixture(scope="module")
def config() -> dict[str, dict[str, Any]]:
    return _by_kind(KUBERAY / "config.yaml")


def _check_ray_cluster_spec(spec: dict[str, Any], config: dict[str, dict[str, Any]], where: str) -> None:
    """What KubeRay needs in a RayCluster spec (also a RayJob's rayClusterSpec), and what hwnas
    needs in each Ray pod: the project image, the database Secret and the shared NAS_HOME claim."""
    assert spec["rayVersion"] == _ray_pin(), f"{where}: rayVersion != pyproject.toml's ray pin"
    secret, pvc = config["Secret"], config["PersistentVolumeClaim"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    assert len(groups) >= 2, f"{where}: no worker group"
    for name, group in groups:
        params = group["rayStartParams"]
        assert isinstance(params, dict) and all(isinstance(v, str) for v in params.values()), \
            f"{where}/{name}: rayStartParams values must be strings"
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        limits = container.get("resources", {}).get("limits", {})
        gpu = "nvidia.com/gpu" in limits
        assert container["image"] == (_cuda_image() if gpu else _cpu_image()), f"{where}/{name}"
        env = _env(container)
        ref = env["NAS_DATABASE_URL"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        home = volumes[mounts[env["NAS_HOME"]]]
        assert home["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"], f"{where}/{name}"
        assert set(mounts.values()) <= set(volumes), f"{where}/{name}: a mount without a volume"
        if name != "head":
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], f"{where}/{name}"
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in head["ports"]} >= {6379, 8265}


def test_raycluster(config: dict[str, dict[str, Any]]) -> None:
    rc = _load(KUBERAY / "raycluster.yaml")
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    _check_ray_cluster_spec(rc["spec"], config, "raycluster.yaml")
    images = {g["template"]["spec"]["containers"][0]["image"] for g in rc["spec"]["workerGroupSpecs"]}
    assert images == {_cpu_image(), _cuda_image()}, "a CPU and a GPU worker group"
    _readme_documents(f"`{rc['metadata']['name']}-head-svc`")


def test_rayjob(config: dict[str, dict[str, Any]]) -> None:
    from nas.search import parse_search_spec

    docs = _by_kind(KUBERAY / "rayjob.yaml")
    job, spec_map = docs["RayJob"], docs["ConfigMap"]
    assert job["apiVersion"] == "ray.io/v1"
    js = job["spec"]
    assert js["shutdownAfterJobFinishes"] is True
    assert isinstance(js["ttlSecondsAfterFinished"], int)
    _check_ray_cluster_spec(js["rayClusterSpec"], config, "rayjob.yaml")

    # The entrypoint's spec file is the ConfigMap's, mounted on the head, where the driver runs.
    entry = js["entrypoint"]
    _readme_documents(entry)
    argv = shlex.split(entry)
    assert argv[:2] == ["nas", "search"] and len(argv) == 3, entry
    head_pod = js["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (head,) = head_pod["containers"]
    spec_path = Path(argv[2])
    mount = next(m for m in head["volumeMounts"] if m["mountPath"] == str(spec_path.parent))
    volume = next(v for v in head_pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == spec_map["metadata"]["name"]
    text = spec_map["data"][spec_path.name]

    # A valid search spec, equal to deploy/search-nb201.yaml, reading its table from NAS_HOME, with
    # no more evaluators than the workers have CPUs.
    spec = parse_search_spec(yaml.safe_load(text), source="rayjob.yaml")
    assert yaml.safe_load(text) == _load(DEPLOY / "search-nb201.yaml")
    assert spec.evaluator.path.startswith(_env(head)["NAS_HOME"] + "/")
    cpus = sum(g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
               for g in js["rayClusterSpec"]["workerGroupSpecs"])
    assert 1 < spec.budget.parallelism <= cpus


def test_api_deployment(config: dict[str, dict[str, Any]]) -> None:
    docs = _by_kind(KUBERAY / "api.yaml")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (init,), (api,) = pod["initContainers"], pod["containers"]
    assert init["image"] == api["image"] == _cpu_image()
    assert _command_line(init["command"]) == "nas db upgrade"
    serve = _command_line(api["command"])
    _readme_documents(serve)
    port = int(re.search(r"--port (\d+)", serve).group(1))
    assert api["ports"][0]["containerPort"] == port
    env = _env(api)
    rc = _load(KUBERAY / "raycluster.yaml")
    assert env["NAS_RAY_ADDRESS"] == f"http://{rc['metadata']['name']}-head-svc:8265"
    _readme_documents(f"NAS_RAY_ADDRESS={env['NAS_RAY_ADDRESS']}")
    _readme_documents(f"--address {env['NAS_RAY_ADDRESS']}")
    secret = config["Secret"]
    for key in ("NAS_DATABASE_URL", "NAS_API_TOKENS"):
        ref = env[key]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    svc = docs["Service"]
    assert svc["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


# --------------------------------------------------------------------------- Ray cluster launcher


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return _load(DEPLOY / "ray-cluster.yaml")


def test_launcher_fields_and_commands(launcher: dict[str, Any]) -> None:
    assert launcher["cluster_name"]
    provider = launcher["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and provider["worker_ips"]
    assert launcher["auth"]["ssh_user"] and launcher["auth"]["ssh_private_key"]
    docker = launcher["docker"]
    assert docker["image"] == _cpu_image()
    opts = " ".join(docker["run_options"])
    assert re.search(r"--env NAS_DATABASE_URL=postgresql\+psycopg://", opts)
    home = re.search(r"--env NAS_HOME=(\S+)", opts).group(1)
    assert re.search(rf"-v \S+:{re.escape(home)}(\s|$)", opts), "NAS_HOME is not a shared mount"

    def ray_start(commands: list[str]) -> str:
        (cmd,) = [c for c in commands if "ray start" in c]
        return cmd.split(";")[-1].strip()  # drop the `ulimit ...;` prefix

    head = ray_start(launcher["head_start_ray_commands"])
    worker = ray_start(launcher["worker_start_ray_commands"])
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    port = re.search(r"--port=(\d+)", head).group(1)
    assert worker == f"ray start --address=$RAY_HEAD_IP:{port}"
    _readme_documents(head.replace(" --autoscaling-config=~/ray_bootstrap_config.yaml", ""))
    _readme_documents(worker)
    _readme_documents("ray up deploy/ray-cluster.yaml")


def test_launcher_passes_ray_up_validation(launcher: dict[str, Any]) -> None:
    """`ray up` prepares the config (filling the local provider's single node type) and validates
    it against Ray's JSON schema before contacting any machine; run the same two steps."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(launcher)
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    workers = len(launcher["provider"]["worker_ips"])
    node_type = prepared["available_node_types"][prepared["head_node_type"]]
    assert node_type["min_workers"] == node_type["max_workers"] == workers


def test_ray_up_validation_rejects_a_broken_launcher_config(launcher: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = dict(launcher)
    broken["head_start_ray_command"] = broken.pop("head_start_ray_commands")  # a typo
    with pytest.raises(Exception, match="head_start_ray_command"):
        validate_config(prepare_config(broken))


# --------------------------------------------------------------------------- the CLI


def _nas_commands() -> dict[str, set[str]]:
    """Every `nas ...` command line in deploy/ and in the README section -> where it was seen."""
    seen: dict[str, set[str]] = {}

    def add(line: str, where: str) -> None:
        for m in re.finditer(r"(?:^|[\s\"'(;&|`])nas((?: [a-z][\w-]*)+)", line):
            seen.setdefault("nas" + m.group(1), set()).add(where)

    def walk(node: Any, where: str) -> None:  # commands written as YAML lists: ["nas", "db", ...]
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("command", "args", "entrypoint") and isinstance(value, list | str):
                    add(_command_line(value), where)
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for path in DEPLOY.rglob("*"):
        if path.is_file():
            where = path.relative_to(DEPLOY.parent).as_posix()
            text = path.read_text()  # commands anywhere, comments included
            if path.name.startswith("Dockerfile"):
                cmd = next(i for i in _instructions(path) if i.startswith("CMD "))
                text = shlex.join(yaml.safe_load(cmd[4:]))
            else:
                for doc in _load_all(path):
                    walk(doc, where)
            add(text, where)
    code = re.findall(r"```.*?```|`[^`\n]+`", _section(), flags=re.S)
    add("\n".join(code), "README")
    return seen


def test_every_nas_command_named_exists() -> None:
    import typer.main

    from nas.cli import app

    root = typer.main.get_command(app)
    seen = _nas_commands()
    assert {"nas serve", "nas db upgrade", "nas search", "nas submit"} <= {
        " ".join(c.split()[:3] if c.startswith("nas db") else c.split()[:2]) for c in seen
    }
    missing = []
    for line, where in sorted(seen.items()):
        words = line.split()[1:]
        group = root
        for word in words:
            sub = group.commands.get(word)  # type: ignore[attr-defined]
            if sub is None:
                missing.append(f"`nas ... {word}` ({line!r}, in {', '.join(sorted(where))})")
                break
            if not hasattr(sub, "commands"):
                break  # a command: the rest are its arguments
            group = sub
    assert not missing, "not registered in nas.cli: " + "; ".join(missing)


def test_cluster_runner_module_exists() -> None:
    _readme_documents("python -m nas.service._runner JOB_ID")
    assert importlib.util.find_spec("nas.service._runner") is not None
    out = subprocess.run([sys.executable, "-c", "import nas.service._runner as r; assert callable(r.main)"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
