"""docker-compose.yml and the images it uses, checked without a Docker engine.

Compose validates and renders the file by itself (`docker compose config`), so these
tests need only a Compose v2 CLI: the Docker CLI's plugin, or the standalone binary
that the dev extras install. They start no container: whether the stack runs is
not tested here.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from deploy.stack import StackSettings, render, template_values

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "nginx" / "fraud.conf.template"
TEMPLATE_NAME = re.compile(r"\$\{(FRAUD_[A-Z0-9_]+)\}")

# host port of each container port, from DESIGN.md's table (the gateway's from the
# README); all bound to 127.0.0.1 unless FRAUD_BIND_ADDRESS says otherwise
DESIGN_PORTS = {
    "nginx": {8080: 8080},
    "triton": {8000: 8000, 8001: 8001, 8002: 8002},
    "gateway": {8090: 8090},
    "locust": {8089: 8089},
    "prometheus": {9090: 9090},
    "grafana": {3000: 3000},
}
MONITORING = {"prometheus", "grafana"}


def _major_version(binary: str) -> int:
    answer = subprocess.run(
        [binary, "version", "--short"], capture_output=True, text=True, check=False
    )
    match = re.match(r"v?(\d+)\.", answer.stdout.strip())
    return int(match[1]) if answer.returncode == 0 and match else 0


def find_compose() -> list[str] | None:
    """`docker compose` when the plugin exists, else a Compose v2 binary."""
    docker = shutil.which("docker")
    if docker:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        )
        if plugin.returncode == 0:
            return [docker, "compose"]
    # Compose v1 (the Python docker-compose) has no JSON output: v2 or later only
    beside_python = Path(sys.executable).parent / "docker-compose"
    for binary in (shutil.which("docker-compose"), beside_python):
        if binary and Path(binary).exists() and _major_version(str(binary)) >= 2:
            return [str(binary)]
    return None


def run_compose(
    compose: list[str], *args: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Compose on the project's file with no FRAUD_* or COMPOSE_* from outside.

    Ports and limits then take the file's defaults, whatever the caller's shell or a
    local .env says; ``env`` adds variables on purpose.
    """
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FRAUD_", "COMPOSE_"))
    }
    command = [
        *compose,
        "--project-directory",
        str(ROOT),
        "--file",
        str(ROOT / "docker-compose.yml"),
        "--env-file",
        os.devnull,
        *args,
    ]
    return subprocess.run(
        command,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def rendered_config(compose: list[str], *profile: str, env: dict | None = None):
    answer = run_compose(compose, *profile, "config", "--format", "json", env=env)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


@pytest.fixture(scope="module")
def compose() -> list[str]:
    found = find_compose()
    if found is None:
        pytest.skip(
            "no Docker Compose v2 CLI: neither `docker compose` nor a docker-compose "
            "v2 binary on PATH or in this environment (make install brings one)"
        )
    return found


@pytest.fixture(scope="module")
def config(compose) -> dict:
    return rendered_config(compose)


@pytest.fixture(scope="module")
def monitoring_config(compose) -> dict:
    return rendered_config(compose, "--profile", "monitoring")


def published(service: dict) -> dict[int, int]:
    return {p["target"]: int(p["published"]) for p in service.get("ports", [])}


def nginx_environment(config: dict) -> dict:
    return config["services"]["nginx"]["environment"]


# the compose file


@pytest.mark.parametrize("profile", [[], ["--profile", "monitoring"]])
def test_compose_file_is_valid(compose, profile):
    answer = run_compose(compose, *profile, "config", "--quiet")

    assert answer.returncode == 0, answer.stderr


def test_monitoring_services_need_their_profile(config, monitoring_config):
    assert not MONITORING & set(config["services"])
    assert set(monitoring_config["services"]) >= MONITORING


def test_published_ports_are_the_designs(monitoring_config):
    services = monitoring_config["services"]

    for name, ports in DESIGN_PORTS.items():
        assert published(services[name]) == ports, name
        assert {p["host_ip"] for p in services[name]["ports"]} == {"127.0.0.1"}, name


def test_host_ports_follow_fraud_variables(compose):
    overrides = {
        "FRAUD_BIND_ADDRESS": "0.0.0.0",
        "FRAUD_NGINX_PORT": "18080",
        "FRAUD_TRITON_HTTP_PORT": "18000",
        "FRAUD_TRITON_GRPC_PORT": "18001",
        "FRAUD_TRITON_METRICS_PORT": "18002",
    }

    services = rendered_config(compose, env=overrides)["services"]

    assert published(services["nginx"]) == {8080: 18080}
    assert published(services["triton"]) == {8000: 18000, 8001: 18001, 8002: 18002}
    assert services["nginx"]["ports"][0]["host_ip"] == "0.0.0.0"


def test_triton_serves_the_mounted_model_repository_read_only(config):
    triton = config["services"]["triton"]
    mounts = {m["target"]: m for m in triton["volumes"]}

    assert "--model-repository=/models" in triton["command"]
    assert Path(mounts["/models"]["source"]) == ROOT / "model_repository"
    assert mounts["/models"]["read_only"] is True


def test_triton_uses_its_own_onnxruntime_backend(config):
    sources = [Path(m["source"]) for m in config["services"]["triton"]["volumes"]]

    assert not [s for s in sources if s.is_relative_to(ROOT / "backends")]


def test_gateway_reaches_triton_by_service_name(config):
    environment = config["services"]["gateway"]["environment"]

    assert environment["FRAUD_TRITON_URL"] == "triton:8000"


def test_services_start_after_healthy_dependencies(config):
    expected = {"gateway": {"triton"}, "nginx": {"gateway", "triton"}}
    services = config["services"]

    for name, needs in expected.items():
        conditions = {
            k: v["condition"] for k, v in services[name]["depends_on"].items()
        }
        assert conditions == dict.fromkeys(needs, "service_healthy"), name
    # the gateway's check lives in its Dockerfile, the others' here
    assert "v2/health/ready" in " ".join(services["triton"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["nginx"]["healthcheck"]["test"])


def test_locust_aims_at_nginx(config):
    locust = config["services"]["locust"]

    assert "http://nginx:8080" in locust["command"]
    assert "/mnt/locust/locustfile.py" in locust["command"]
    assert Path(locust["volumes"][0]["source"]) == ROOT / "loadtest"


# nginx: one template for both ways of running


def test_nginx_environment_gives_every_template_name(config):
    used = set(TEMPLATE_NAME.findall(TEMPLATE.read_text()))

    missing = used - set(nginx_environment(config))

    assert not missing, f"the nginx service gives no value for {sorted(missing)}"


def test_nginx_limits_default_to_the_native_stacks(config):
    native = template_values(StackSettings())
    limits = ["FRAUD_NGINX_RATE", "FRAUD_NGINX_BURST", "FRAUD_NGINX_MAX_BODY"]

    compose_values = {name: nginx_environment(config)[name] for name in limits}

    assert compose_values == {name: native[name] for name in limits}


def test_nginx_renders_only_fraud_names(config):
    # envsubst would otherwise replace any variable the container happens to have
    assert nginx_environment(config)["NGINX_ENVSUBST_FILTER"] == "^FRAUD_"


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return found


def host_values(config: dict, folder: Path) -> dict:
    """The nginx service's values, made checkable on this host.

    The upstream names `gateway` and `triton` resolve only on the compose network,
    and nginx -t resolves them, so 127.0.0.1 stands in for both hosts (ports kept);
    the health cache moves into the test's folder.
    """
    values = dict(nginx_environment(config))
    for name in ("FRAUD_GATEWAY_UPSTREAM", "FRAUD_TRITON_UPSTREAM"):
        values[name] = "127.0.0.1:" + values[name].rsplit(":", 1)[1]
    values["FRAUD_NGINX_CACHE_DIR"] = str(folder / "cache")
    return values


def temp_paths(folder: Path) -> str:
    # nginx -t creates its temp folders; keep them out of the system's
    kinds = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    return "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in kinds)


def nginx_t(main: Path) -> subprocess.CompletedProcess:
    command = [nginx_binary(), "-t", "-p", str(main.parent), "-c", str(main)]
    return subprocess.run(
        [*command, "-e", "stderr"], capture_output=True, text=True, check=False
    )


def test_template_with_compose_values_passes_nginx_t(config, tmp_path):
    """Rendered as the native stack renders it, inside a minimal main config.

    The upstream hosts are 127.0.0.1 here, not `gateway` and `triton`; see
    host_values.
    """
    conf = tmp_path / "fraud.conf"
    conf.write_text(render(TEMPLATE, host_values(config, tmp_path)))
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path / 'nginx.pid'};\n"
        "events {}\n"
        f"http {{\n{temp_paths(tmp_path)}\n    include {conf};\n}}\n"
    )

    answer = nginx_t(main)

    assert answer.returncode == 0, answer.stderr


def test_container_main_config_passes_nginx_t(config, tmp_path):
    """nginx/container.conf as the container reads it, with the rendered template.

    Laid out like the image's /etc/nginx (conf.d/, mime.types), with the upstream
    hosts at 127.0.0.1 (see host_values) and the temp folders in the test's folder.
    """
    (tmp_path / "conf.d").mkdir()
    rendered = render(TEMPLATE, host_values(config, tmp_path))
    (tmp_path / "conf.d" / "fraud.conf").write_text(rendered)
    (tmp_path / "mime.types").write_text("types { application/json json; }\n")
    container = (ROOT / "nginx" / "container.conf").read_text()
    assert container.count("http {") == 1
    main = tmp_path / "nginx.conf"
    main.write_text(container.replace("http {", f"http {{\n{temp_paths(tmp_path)}"))

    answer = nginx_t(main)

    assert answer.returncode == 0, answer.stderr


# the gateway image


def test_gateway_requirements_have_pyprojects_bounds():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {r.name: r.specifier for r in map(Requirement, project["dependencies"])}
    lines = (ROOT / "gateway" / "requirements.txt").read_text().splitlines()

    image = [Requirement(line) for line in lines if line and not line.startswith("#")]

    assert image
    for requirement in image:
        assert requirement.specifier == bounds.get(requirement.name), requirement.name


def test_gateway_image_copies_only_the_gateway_and_runs_unprivileged():
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    instructions = re.sub(r"\\\n", " ", dockerfile).splitlines()

    copies = [line.split()[1] for line in instructions if line.startswith("COPY")]
    users = [line.split()[1] for line in instructions if line.startswith("USER")]

    assert copies and all(source.startswith("gateway/") for source in copies)
    assert users and users[-1] not in {"root", "0"}
    assert any("/health" in line for line in instructions if "HEALTHCHECK" in line)
