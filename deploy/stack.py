"""Run the native stack (Triton, gateway, nginx) under supervisord.

    python -m deploy.stack up | down | status | logs | render

Every setting is an environment variable; ``python -m deploy.stack --help`` lists
them with their defaults. Tests start a second stack beside a running one by
giving other ports and another run folder.
"""

import argparse
import configparser
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path

from training.repository import disk_versions

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "fraud_xgb"


@dataclass(frozen=True)
class StackSettings:
    nginx_port: int = 8080
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    gateway_port: int = 8090
    gateway_workers: int = 1
    # nginx reaches the gateway over a unix socket ("unix") or TCP on gateway_port
    gateway_transport: str = "unix"
    # nginx per-client rate limit, and the burst it lets through on top
    nginx_rate: str = "20000r/s"
    nginx_burst: int = 5000
    nginx_workers: int = 1
    nginx_max_body: str = "1m"
    # proxies (CIDR) whose X-Forwarded-For names the client; 0.0.0.0/32: none
    nginx_trusted_proxy: str = "0.0.0.0/32"
    # when set, /predict and /v2/ through nginx need header X-API-Key: <key>
    api_key: str = ""
    model_repository: str = "model_repository"
    run_dir: str = ".run"
    # seconds `up` waits for /ready
    ready_timeout_s: int = 120

    @property
    def run_path(self) -> Path:
        return (ROOT / self.run_dir).resolve()

    @property
    def log_path(self) -> Path:
        return self.run_path / "logs"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"


def load_settings() -> StackSettings:
    values = {}
    for field in fields(StackSettings):
        name = f"FRAUD_{field.name.upper()}"
        if name in os.environ:
            kind = type(field.default)
            try:
                values[field.name] = kind(os.environ[name])
            except ValueError:
                sys.exit(f"{name}={os.environ[name]!r} is not a valid {kind.__name__}")
    return StackSettings(**values)


def describe_settings() -> str:
    return "\n".join(
        f"  FRAUD_{f.name.upper():<22} default {f.default}"
        for f in fields(StackSettings)
    )


# backend folder


def pytriton_server_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("nvidia-pytriton is not installed in this environment (make install)")
    return Path(spec.submodule_search_locations[0]) / "tritonserver"


def prepare_backends(run: Path) -> Path:
    """A backend folder holding the wheel's Python backend and our onnxruntime one.

    The wheel's folder is linked, not copied: its libraries find their bundled
    dependencies relative to where they really are. The stub for this Python
    version is linked into it, where the Python backend looks for it.
    """
    server = pytriton_server_dir()
    python_backend = server / "backends" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        sys.exit(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    stub_link = python_backend / stub.name
    if not stub_link.exists():
        stub_link.symlink_to(os.path.relpath(stub, python_backend))

    backends = run / "backends"
    backends.mkdir(parents=True, exist_ok=True)
    for name, target in [
        ("python", python_backend),
        ("onnxruntime", ROOT / "backends" / "onnxruntime"),
    ]:
        link = backends / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return backends


# configuration files


def template_values(s: StackSettings) -> dict:
    if not re.fullmatch(r"[A-Za-z0-9._~-]*", s.api_key):
        sys.exit("FRAUD_API_KEY may hold only letters, digits and . _ ~ -")
    return {
        "FRAUD_NGINX_RATE": s.nginx_rate,
        "FRAUD_NGINX_BURST": str(s.nginx_burst),
        "FRAUD_NGINX_MAX_BODY": s.nginx_max_body,
        "FRAUD_NGINX_TRUSTED_PROXY": s.nginx_trusted_proxy,
        "FRAUD_API_KEY": s.api_key,
        "FRAUD_API_KEY_REQUIRED": "on" if s.api_key else "off",
        "FRAUD_NGINX_WORKERS": str(s.nginx_workers),
        "FRAUD_NGINX_LISTEN": f"127.0.0.1:{s.nginx_port}",
        "FRAUD_NGINX_CACHE_DIR": str(s.run_path / "nginx" / "cache"),
        "FRAUD_GATEWAY_UPSTREAM": gateway_upstream(s),
        "FRAUD_TRITON_UPSTREAM": f"127.0.0.1:{s.triton_http_port}",
        "FRAUD_RUN_DIR": str(s.run_path),
        "FRAUD_LOG_DIR": str(s.log_path),
        # as root, nginx workers would run as nobody, who cannot enter the run folder
        "FRAUD_NGINX_USER": "user root;" if os.geteuid() == 0 else "",
    }


def render(template: Path, values: dict) -> str:
    """Substitute ``${FRAUD_*}`` names as envsubst does; nginx's ``$vars`` stay."""

    def value(match: re.Match) -> str:
        if match[1] not in values:
            sys.exit(f"{template.name} uses ${{{match[1]}}}, which has no value")
        return values[match[1]]

    return re.sub(r"\$\{(FRAUD_[A-Z0-9_]+)\}", value, template.read_text())


def write_nginx_config(s: StackSettings) -> Path:
    folder = s.run_path / "nginx"
    folder.mkdir(parents=True, exist_ok=True)
    values = template_values(s)
    (folder / "fraud.conf").write_text(
        render(ROOT / "nginx" / "fraud.conf.template", values)
    )
    main = folder / "nginx.conf"
    main.write_text(render(ROOT / "nginx" / "native.conf.template", values))
    return main


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        sys.exit("nginx is not installed: apt-get install nginx-light (or nginx)")
    return found


def triton_command(s: StackSettings, backends: Path) -> list[str]:
    return [
        str(pytriton_server_dir() / "bin" / "tritonserver"),
        f"--model-repository={(ROOT / s.model_repository).resolve()}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={s.triton_http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={s.triton_grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={s.triton_metrics_port}",
        # explicit control: versions change only when `deploy.models` asks
        "--model-control-mode=explicit",
        f"--load-model={MODEL_NAME}",
        "--allow-gpu-metrics=false",
        "--log-verbose=0",
        "--exit-timeout-secs=10",
    ]


def gateway_socket(s: StackSettings) -> Path:
    return s.run_path / "gateway.sock"


def gateway_bind(s: StackSettings) -> list[str]:
    if s.gateway_transport == "unix":
        return [f"--uds={gateway_socket(s)}"]
    if s.gateway_transport == "tcp":
        return ["--host=127.0.0.1", f"--port={s.gateway_port}"]
    sys.exit(f"FRAUD_GATEWAY_TRANSPORT={s.gateway_transport!r}: use unix or tcp")


def gateway_upstream(s: StackSettings) -> str:
    if s.gateway_transport == "unix":
        return f"unix:{gateway_socket(s)}"
    return f"127.0.0.1:{s.gateway_port}"


def gateway_command(s: StackSettings) -> list[str]:
    return [
        str(Path(sys.executable).parent / "uvicorn"),
        "gateway.app:app",
        *gateway_bind(s),
        f"--workers={s.gateway_workers}",
        "--loop=uvloop",
        "--http=httptools",
        "--no-access-log",
        "--no-proxy-headers",
        "--timeout-keep-alive=75",
        "--timeout-graceful-shutdown=10",
        "--backlog=4096",
    ]


def supervisor_config(s: StackSettings) -> configparser.ConfigParser:
    run, logs = s.run_path, s.log_path
    venv_bin = Path(sys.executable).parent
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    triton_env = {
        # the Python backend stub finds the venv's packages only with its bin/
        # first on PATH, and needs libpython from the interpreter's own lib folder
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LD_LIBRARY_PATH": ":".join(
            p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p
        ),
    }
    gateway_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k.startswith("FRAUD_") and not k.startswith("FRAUD_TRITON_URL")
        },
        "FRAUD_TRITON_URL": f"127.0.0.1:{s.triton_http_port}",
    }

    def program(command: list[str], env: dict, **extra) -> dict:
        return {
            "command": " ".join(_quote(c) for c in command),
            "directory": str(ROOT),
            "environment": ",".join(f'{k}="{_escape(v)}"' for k, v in env.items()),
            "autostart": "true",
            "autorestart": "true",
            "startsecs": "2",
            "startretries": "1000",
            "stopsignal": "TERM",
            "stopwaitsecs": "20",
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile_maxbytes": "20MB",
            "stdout_logfile_backups": "2",
            **extra,
        }

    config = configparser.ConfigParser(interpolation=None)
    config["unix_http_server"] = {"file": str(run / "supervisor.sock")}
    config["supervisord"] = {
        "logfile": str(logs / "supervisord.log"),
        "pidfile": str(run / "supervisord.pid"),
        "directory": str(ROOT),
        "identifier": f"fraud-{s.nginx_port}",
    }
    factory = "supervisor.rpcinterface:make_main_rpcinterface"
    config["rpcinterface:supervisor"] = {"supervisor.rpcinterface_factory": factory}
    config["supervisorctl"] = {"serverurl": f"unix://{run / 'supervisor.sock'}"}
    config["program:triton"] = program(
        triton_command(s, run / "backends"),
        triton_env,
        priority="10",
        stdout_logfile=str(logs / "triton.log"),
    )
    config["program:gateway"] = program(
        gateway_command(s),
        gateway_env,
        priority="20",
        stdout_logfile=str(logs / "gateway.log"),
    )
    config["program:nginx"] = program(
        [
            nginx_binary(),
            "-c",
            str(run / "nginx" / "nginx.conf"),
            "-p",
            str(run / "nginx"),
            "-g",
            "daemon off;",
        ],
        {},
        priority="30",
        stopsignal="QUIT",
        stdout_logfile=str(logs / "nginx.log"),
    )
    return config


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def _escape(value: str) -> str:
    return value.replace("%", "%%").replace('"', '\\"')


def write_configs(s: StackSettings) -> Path:
    s.log_path.mkdir(parents=True, exist_ok=True)
    prepare_backends(s.run_path)
    write_nginx_config(s)
    path = s.run_path / "supervisord.conf"
    with path.open("w") as handle:
        supervisor_config(s).write(handle)
    return path


# commands


def supervisorctl(s: StackSettings, *args: str, check: bool = True):
    command = [
        str(Path(sys.executable).parent / "supervisorctl"),
        "-c",
        str(s.run_path / "supervisord.conf"),
        *args,
    ]
    return subprocess.run(command, check=check, capture_output=True, text=True)


def is_running(s: StackSettings) -> bool:
    if not (s.run_path / "supervisord.conf").exists():
        return False
    return supervisorctl(s, "pid", check=False).stdout.strip().isdigit()


def has_model(s: StackSettings) -> bool:
    model = ROOT / s.model_repository / MODEL_NAME
    return (model / "config.pbtxt").exists() and bool(disk_versions(model))


def wait_ready(s: StackSettings) -> None:
    deadline = time.monotonic() + s.ready_timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{s.base_url}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    sys.exit(
        f"the stack was not ready within {s.ready_timeout_s} s; "
        f"see the logs in {s.log_path}"
    )


def example_features() -> list[float]:
    holdout = ROOT / "data" / "holdout.npz"
    if holdout.exists():
        import numpy as np

        return [round(float(v), 4) for v in np.load(holdout)["features"][0]]
    return [1.0] * 30


def example_answer(s: StackSettings, body: str, headers: dict) -> str:
    """/predict's answer to the example row (a low rate limit may ask to wait)."""
    request = urllib.request.Request(f"{s.base_url}/predict", body.encode(), headers)
    for _ in range(10):
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code != 429:
                return f"HTTP {exc.code}: {exc.read().decode()}"
            time.sleep(float(exc.headers.get("Retry-After", "1")))
    return "HTTP 429: rate limited (FRAUD_NGINX_RATE)"


def busy_ports(s: StackSettings) -> list[int]:
    ports = [
        s.nginx_port,
        s.triton_http_port,
        s.triton_grpc_port,
        s.triton_metrics_port,
    ]
    if s.gateway_transport == "tcp":
        ports.append(s.gateway_port)
    busy = []
    for port in ports:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def up(s: StackSettings) -> None:
    if not has_model(s):
        sys.exit(f"no model in {s.model_repository}/{MODEL_NAME}: run make train")
    config = write_configs(s)
    if is_running(s):
        print("already running; restarting changed programs, reloading nginx")
        supervisorctl(s, "update")
        # nginx's own config is not part of its program entry: reload it always
        # (graceful: old workers finish their requests)
        supervisorctl(s, "signal", "HUP", "nginx")
    else:
        busy = busy_ports(s)
        if busy:
            sys.exit(
                f"ports {busy} are already in use on 127.0.0.1: stop what holds "
                "them, or choose others (FRAUD_NGINX_PORT, FRAUD_TRITON_HTTP_PORT, ...)"
            )
        supervisord = Path(sys.executable).parent / "supervisord"
        subprocess.run([str(supervisord), "-c", str(config)], check=True)
    wait_ready(s)

    body = json.dumps({"features": example_features()})
    headers = {"Content-Type": "application/json"}
    if s.api_key:
        headers["X-API-Key"] = s.api_key
    result = example_answer(s, body, headers)
    print(
        f"ready: nginx {s.base_url}, Triton 127.0.0.1:{s.triton_http_port} "
        f"(gRPC {s.triton_grpc_port}, metrics {s.triton_metrics_port})"
    )
    key = f" -H 'X-API-Key: {s.api_key}'" if s.api_key else ""
    print(
        f"\ncurl -X POST {s.base_url}/predict -H 'Content-Type: application/json'"
        f"{key} -d '{body}'\n{result}"
    )


def down(s: StackSettings) -> None:
    if not is_running(s):
        print("not running")
        return
    # front to back, each waiting for the previous to finish: nginx stops
    # accepting and completes what it holds while the gateway and Triton still
    # answer; then the gateway drains its batches while Triton still answers
    for program in ("nginx", "gateway", "triton"):
        supervisorctl(s, "stop", program, check=False)
    supervisorctl(s, "shutdown")
    pid_file = s.run_path / "supervisord.pid"
    deadline = time.monotonic() + 60
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    print("stopped")


def status(s: StackSettings) -> None:
    if not is_running(s):
        print("not running")
        return
    print(supervisorctl(s, "status", check=False).stdout, end="")


def logs(s: StackSettings) -> None:
    for path in sorted(s.log_path.glob("*.log")):
        print(f"== {path}")
        lines = path.read_text(errors="replace").splitlines()[-5:]
        print("\n".join(f"   {line[:160]}" for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="settings:\n" + describe_settings(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "status", "logs", "render"])
    command = parser.parse_args().command
    settings = load_settings()
    if command == "render":
        print(write_configs(settings))
    else:
        {"up": up, "down": down, "status": status, "logs": logs}[command](settings)


if __name__ == "__main__":
    main()
