"""Packaging and deployment: the Dockerfile's build steps as a plain install, and the examples.

No Docker engine is needed. The builder stage is replayed with the running interpreter: the
files the Dockerfile copies (minus what .dockerignore keeps out of the context) are built into a
wheel, which goes into a fresh venv without pip, exactly as in the image; the dependencies come
from the test environment. The runtime stage's ENV, ENTRYPOINT, CMD and HEALTHCHECK are then run
against that venv. The compose file, the systemd unit and the deployment docs are checked
against the code (real GATEWAY_* variables, real subcommands and flags, existing files).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from gateway import __version__
from gateway.cli import EXIT_USAGE, build_parser

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = EXAMPLES / "docker-compose.yml"
UNIT = EXAMPLES / "soest-gateway.service"
DOCS = (ROOT / "docs" / "deployment.md", ROOT / "docs" / "troubleshooting.md")

ENV_NAME_RE = re.compile(r"(?<![A-Z0-9_])GATEWAY_[A-Z0-9_]*[A-Z0-9]")


# --------------------------------------------------------------------------- helpers


def known_env_names() -> set[str]:
    """Every GATEWAY_* variable the code reads (literally named somewhere in gateway/)."""
    names: set[str] = set()
    for path in (ROOT / "gateway").glob("*.py"):
        names |= set(ENV_NAME_RE.findall(path.read_text(encoding="utf-8")))
    return names


def subcommands() -> set[str]:
    parser = build_parser()
    for action in parser._actions:  # argparse offers no public way to list subcommands
        if action.dest == "command":
            return set(action.choices)
    raise AssertionError("soest-gateway has no subcommands")


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions with their build stage; comments and line continuations handled."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker drops comment lines, also inside continuations
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


DOCKER = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
FINAL = max(i.stage for i in DOCKER)


def instructions(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in DOCKER if i.keyword == keyword and (stage is None or i.stage == stage)]


def one(keyword: str, stage: int = FINAL) -> Instruction:
    found = instructions(keyword, stage)
    assert len(found) == 1, f"expected one {keyword} in stage {stage}, found {len(found)}"
    return found[0]


def runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr in instructions("ENV", FINAL):
        for token in shlex.split(instr.args):
            key, sep, value = token.partition("=")
            assert sep, f"use ENV KEY=value, not {instr.args!r}"
            env[key] = value
    return env


def copies(stage: int) -> list[tuple[list[str], str, list[str]]]:
    """(sources, destination, flags) of each COPY in ``stage``."""
    out = []
    for instr in instructions("COPY", stage):
        tokens = shlex.split(instr.args)
        flags = [t for t in tokens if t.startswith("--")]
        rest = [t for t in tokens if not t.startswith("--")]
        out.append((rest[:-1], rest[-1], flags))
    return out


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_re(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i:end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored(relpath: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; a match on a parent counts."""
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_re(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def expand(value: str) -> str:
    """Compose's ${VAR:-default} with the defaults (the examples must work unconfigured)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that could leak the checkout or a real broker."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GATEWAY_") and k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def can_build_offline() -> bool:
    """Can this environment's setuptools build a wheel without downloading the build backend?"""
    try:
        version = tuple(int(x) for x in re.findall(r"\d+", metadata.version("setuptools"))[:2])
    except metadata.PackageNotFoundError:
        return False
    if version >= (70, 1):  # bdist_wheel is part of setuptools since 70.1
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return version >= (68, 0)


# --------------------------------------------------------------------------- the build, replayed


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    rootfs: Path  # stands in for the image's / (config and data volumes)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self) -> dict[str, str]:
        """clean_env() plus the Dockerfile's GATEWAY_* ENV, absolute paths moved under rootfs."""
        env = clean_env()
        for key, value in runtime_env().items():
            if key.startswith("GATEWAY_"):
                env[key] = str(self.rootfs / value.lstrip("/")) if value.startswith("/") else value
        return env


def copy_build_context(dest: Path) -> None:
    """What the builder stage COPYs, filtered through .dockerignore like a real build context."""
    patterns = dockerignore_patterns()
    builder = instructions("FROM")[0].stage
    for sources, target, _ in copies(builder):
        base = dest / target.lstrip("/")
        into_dir = target.endswith("/") or target in (".", "./") or len(sources) > 1
        for source in sources:
            src = ROOT / source
            assert src.exists(), f"Dockerfile copies {source}, which does not exist"
            if src.is_dir():  # COPY dir/ target/ copies the directory's contents
                pairs = [(p, base / p.relative_to(src)) for p in sorted(src.rglob("*")) if p.is_file()]
            else:
                pairs = [(src, base / src.name if into_dir else base)]
            for path, out in pairs:
                if not ignored(path.relative_to(ROOT).as_posix(), patterns):
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, out)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    context = tmp / "src"
    copy_build_context(context)

    wheels = tmp / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), "."]
    if can_build_offline():
        cmd.append("--no-build-isolation")
    proc = run(cmd, cwd=context, env=clean_env(), timeout=300)
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        if re.search(r"No matching distribution found for (setuptools|wheel)|Could not find a version that "
                     r"satisfies the requirement (setuptools|wheel)", out):
            pytest.skip("the build backend (setuptools>=68, wheel) is neither installed nor downloadable here")
        pytest.fail(f"pip wheel failed:\n{out[-3000:]}")
    (wheel,) = wheels.glob("*.whl")

    venv = tmp / "venv"
    proc = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    proc = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                "--quiet", str(wheel)], env=clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The image installs the dependencies from PyPI; here they come from the test environment's
    # site-packages. A .pth line only adds the directory: the .pth files in it (among them the
    # editable install of this checkout) are not executed, so `gateway` resolves to the wheel.
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    candidates = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    deps = [p for p in candidates if Path(p).is_dir() and Path(p).resolve() != ROOT]
    (Path(purelib) / "_test_dependencies.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")

    # The runtime stage: COPY topics.yaml /config/topics.yaml, and the data volume.
    rootfs = tmp / "rootfs"
    for sources, target, flags in copies(FINAL):
        if any(f.startswith("--from") for f in flags):
            continue
        (source,) = sources
        dest = rootfs / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / source, dest)
    return Installed(wheel=wheel, venv=venv, rootfs=rootfs)


def test_the_wheel_holds_both_packages_and_the_console_script(installed: Installed):
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = configparser.ConfigParser()
        scripts.read_string(whl.read(entry_points).decode())
    for package in ("gateway", "adapters"):
        modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).glob("*.py")}
        assert modules, package
        assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert not [n for n in names if n.startswith(("tests/", "bench/", "mosquitto/"))]
    assert dict(scripts["console_scripts"]) == {"soest-gateway": "gateway.cli:main"}
    assert installed.wheel.name.startswith(f"soest_mqtt_gateway-{__version__}-")


def test_the_installed_wheel_runs_without_the_checkout(installed: Installed, tmp_path: Path):
    env = installed.env()
    where = run([str(installed.python), "-c", "import gateway, adapters; print(gateway.__file__, adapters.__file__)"],
                cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert Path(path).is_relative_to(installed.venv), f"imported {path}, not the installed wheel"
    for cmd in ([str(installed.script("soest-gateway")), "--version"],
                [str(installed.python), "-m", "gateway", "--version"]):
        proc = run(cmd, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"soest-gateway {__version__}"


def test_the_default_config_validates_with_the_images_environment(installed: Installed, tmp_path: Path):
    env = installed.env()
    config = Path(env["GATEWAY_CONFIG"])
    assert config.is_file(), "the runtime stage must COPY the default config to GATEWAY_CONFIG"
    proc = run([str(installed.script("soest-gateway")), "check-config"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{config}: OK")


def test_entrypoint_runs_serves_the_healthcheck_and_stops_cleanly_on_sigterm(installed: Installed, tmp_path: Path):
    # The default config fetches from the internet; the sun is computed locally.
    settings = yaml.safe_load((ROOT / "topics.yaml").read_text(encoding="utf-8"))
    settings["sources"] = {"sun": settings["sources"]["sun"]}
    config = tmp_path / "topics.yaml"
    config.write_text(yaml.safe_dump(settings, allow_unicode=True, sort_keys=False), encoding="utf-8")
    env = installed.env()
    data_dir = Path(env["GATEWAY_DATA_DIR"])
    http_port = free_port()
    env.update(GATEWAY_CONFIG=str(config), GATEWAY_HTTP_HOST="127.0.0.1", GATEWAY_HTTP_PORT=str(http_port),
               GATEWAY_MQTT_HOST="127.0.0.1", GATEWAY_MQTT_PORT=str(free_port()))  # no broker there

    entrypoint = json.loads(one("ENTRYPOINT").args)
    command = json.loads(one("CMD").args)
    health = one("HEALTHCHECK").args
    probe = json.loads(health.split(" CMD ", 1)[1])
    assert probe[0] == "python"
    probe[0] = str(installed.python)

    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen([str(installed.script(entrypoint[0])), *entrypoint[1:], *command],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            check = run(probe, cwd=tmp_path, env=env, timeout=10)
            if check.returncode == 0:
                break
            assert proc.poll() is None, f"the gateway exited: {(tmp_path / 'gateway.log').read_text()}"
            assert time.monotonic() < deadline, f"healthcheck never passed: {check.stderr[-500:]}"
            time.sleep(0.2)  # poll interval until the healthcheck passes (or the deadline)
        # The probe really checks: pointed at a port where nothing listens, it fails.
        assert run(probe, cwd=tmp_path, env={**env, "GATEWAY_HTTP_PORT": str(free_port())}).returncode != 0
        proc.send_signal(signal.SIGTERM)  # docker stop / systemctl stop
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert (data_dir / "state.json").is_file(), "GATEWAY_DATA_DIR was not used"


# --------------------------------------------------------------------------- Dockerfile, static


def test_dockerfile_stages_user_and_metadata():
    bases = [i.args.split()[0] for i in instructions("FROM")]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    assert any(f.startswith("--from=") for _, _, flags in copies(FINAL) for f in flags), "runtime copies the venv"
    user = one("USER").args.split(":")[0]
    assert user not in ("root", "0", ""), "the image must not run as root"
    assert any(f"--uid {user}" in i.args for i in instructions("RUN", FINAL)), "USER must be the created user"
    assert one("WORKDIR").args == "/app"
    labels = " ".join(i.args for i in instructions("LABEL", FINAL))
    for key in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{key}=" in labels
    meta = metadata.metadata("soest-mqtt-gateway")
    licence = meta.get("License-Expression") or meta.get("License")  # PEP 639 metadata, or the older field
    assert f'org.opencontainers.image.licenses="{licence}"' in labels


def test_dockerfile_interface_matches_the_code():
    env = runtime_env()
    gateway_vars = {k for k in env if k.startswith("GATEWAY_")}
    assert gateway_vars >= {"GATEWAY_CONFIG", "GATEWAY_DATA_DIR", "GATEWAY_HTTP_HOST", "GATEWAY_HTTP_PORT"}
    assert gateway_vars <= known_env_names(), f"not read by the gateway: {sorted(gateway_vars - known_env_names())}"
    volumes = json.loads(one("VOLUME").args)
    assert set(volumes) == {"/config", "/data"}
    assert env["GATEWAY_DATA_DIR"] == "/data"
    assert Path(env["GATEWAY_CONFIG"]).parent == Path("/config")
    assert one("EXPOSE").args.split() == [env["GATEWAY_HTTP_PORT"]] == ["9142"]
    assert json.loads(one("ENTRYPOINT").args) == ["soest-gateway"]
    assert metadata.entry_points(group="console_scripts", name="soest-gateway")
    (command,) = json.loads(one("CMD").args)
    assert command in subcommands()


def test_dockerfile_healthcheck_uses_healthz_without_curl():
    health = one("HEALTHCHECK").args
    options, sep, probe = health.partition(" CMD ")
    assert sep, "HEALTHCHECK needs CMD"
    assert "--interval=" in options
    assert "--timeout=" in options
    cmd = json.loads(probe)  # exec form: no shell needed in the image
    assert cmd[:2] == ["python", "-c"]
    assert "/healthz" in cmd[2]
    assert "GATEWAY_HTTP_PORT" in cmd[2]
    assert "curl" not in health
    assert "wget" not in health


def test_dockerignore_keeps_secrets_and_clutter_out_of_the_build_context():
    patterns = dockerignore_patterns()
    for _stage, instrs in ((s, copies(s)) for s in range(FINAL + 1)):
        for sources, _, flags in instrs:
            if any(f.startswith("--from") for f in flags):
                continue
            for source in sources:
                assert not ignored(source.rstrip("/"), patterns), f"{source} is COPYed but dockerignored"
    for needed in ("gateway/cli.py", "gateway/adapter_api.py", "pyproject.toml", "README.md", "topics.yaml"):
        assert not ignored(needed, patterns), needed
    for secret in (".venv/bin/python", ".git/config", ".data/gateway/state.json", "tests/helpers.py",
                   "mosquitto/passwd", "mosquitto/certs/server.key", "gateway/__pycache__/cli.cpython-311.pyc",
                   ".env", "examples/docker-compose.yml", "Dockerfile"):
        assert ignored(secret, patterns), secret


# --------------------------------------------------------------------------- docker compose


COMPOSE_DATA = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
SERVICES = COMPOSE_DATA["services"]


def mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes, with ${VAR:-default} expanded."""
    out = {}
    for spec in service.get("volumes", []):
        parts = expand(spec).split(":")
        out[parts[1]] = parts[0]
    return out


def inline_config(service: dict, target: str) -> str:
    for ref in service.get("configs", []):
        if ref["target"] == target:
            return COMPOSE_DATA["configs"][ref["source"]]["content"]
    raise AssertionError(f"no config mounted at {target}")


def directives(conf: str) -> list[tuple[str, str]]:
    out = []
    for line in conf.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


@pytest.mark.parametrize("name", ["gateway", "city-gateway"])
def test_compose_gateways_build_this_repo_and_use_real_variables(name: str):
    service = SERVICES[name]
    context = (EXAMPLES / service["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
    env = {k: expand(str(v)) for k, v in service["environment"].items()}
    unknown = {k for k in env if k.startswith("GATEWAY_")} - known_env_names()
    assert not unknown, f"not read by the gateway: {sorted(unknown)}"
    broker = env["GATEWAY_MQTT_HOST"]
    dependency = list(service["depends_on"])
    assert len(dependency) == 1
    aliases = SERVICES[dependency[0]].get("networks", {}).get("default", {}).get("aliases", [])
    names_of_broker = {dependency[0], *aliases}
    assert broker in {expand(n) for n in names_of_broker}, "GATEWAY_MQTT_HOST must name the broker service"
    volumes = mounts(service)
    assert "/data" in volumes
    config_source = volumes[runtime_env()["GATEWAY_CONFIG"]]
    assert (EXAMPLES / config_source).resolve() == ROOT / "topics.yaml"
    assert env.get("GATEWAY_HTTP_PORT", "9142") == "9142"


def test_compose_home_broker_listens_on_the_network_with_local_conf_settings():
    service = SERVICES["mosquitto"]
    assert service["image"] == "eclipse-mosquitto:2"
    conf = directives(inline_config(service, "/mosquitto/config/mosquitto.conf"))
    listeners = [v for k, v in conf if k == "listener"]
    assert listeners == ["1883"], "inside compose the broker must listen on all interfaces of its container"
    local = directives((ROOT / "mosquitto" / "local.conf").read_text(encoding="utf-8"))
    for key, value in local:
        if key not in ("listener", "persistence_location", "log_dest"):
            assert (key, value) in conf, f"compose broker lacks '{key} {value}' of mosquitto/local.conf"
    (location,) = [v for k, v in conf if k == "persistence_location"]
    assert location.rstrip("/") in mounts(service), "retained messages must live on a volume"
    assert all(p.startswith("127.0.0.1:") for p in service["ports"]), "the anonymous broker stays on loopback"


def test_compose_city_broker_resolves_the_shipped_relative_paths():
    service = SERVICES["city-broker"]
    assert service["profiles"] == ["city"]
    assert SERVICES["city-gateway"]["profiles"] == ["city"]
    assert service["working_dir"] == "/"
    volumes = mounts(service)
    assert (EXAMPLES / volumes["/mosquitto"]).resolve() == ROOT / "mosquitto"
    assert service["command"][-1] == "/mosquitto/mosquitto.conf"
    conf = directives((ROOT / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8"))
    for key, value in conf:
        if key in ("password_file", "acl_file", "certfile", "keyfile", "persistence_location"):
            assert value.startswith("mosquitto/"), f"{key} {value} would not resolve from /"
    (location,) = [v for k, v in conf if k == "persistence_location"]
    assert "/" + location.rstrip("/") in volumes, "the broker's data needs its own volume"
    published = {int(p.split(":")[-1]) for p in service["ports"]}
    tls_listeners = {int(v.split()[0]) for k, v in conf if k == "listener" and "127.0.0.1" not in v}
    assert published == tls_listeners == {8883, 8884}
    city_env = SERVICES["city-gateway"]["environment"]
    assert int(city_env["GATEWAY_MQTT_PORT"]) in tls_listeners
    assert city_env["GATEWAY_MQTT_TLS"] == "true"
    assert city_env["GATEWAY_MQTT_PASSWORD_FILE"] == "/run/secrets/" + SERVICES["city-gateway"]["secrets"][0]


def test_compose_prometheus_scrapes_the_gateway_with_the_shared_alert_rules():
    service = SERVICES["prometheus"]
    prom = yaml.safe_load(inline_config(service, "/etc/prometheus/prometheus.yml"))
    (job,) = prom["scrape_configs"]
    (targets,) = [c["targets"] for c in job["static_configs"]]
    assert targets == [f"gateway:{runtime_env()['GATEWAY_HTTP_PORT']}"]
    assert "gateway" in SERVICES
    assert "gateway" in SERVICES["city-gateway"]["networks"]["default"]["aliases"]
    shared = EXAMPLES / "prometheus.yml"
    if shared.is_file():  # the standalone example: same job, so dashboards and alerts match
        (shared_job,) = yaml.safe_load(shared.read_text(encoding="utf-8"))["scrape_configs"]
        assert shared_job["job_name"] == job["job_name"]
    for rule_file in prom.get("rule_files", []):
        source = mounts(service)[f"/etc/prometheus/{rule_file}"]
        assert (EXAMPLES / source).is_file()


def test_compose_bind_mounts_exist():
    for name, service in SERVICES.items():
        for target, source in mounts(service).items():
            if source.startswith("."):
                assert (EXAMPLES / source).exists(), f"{name}: {source} -> {target} does not exist"


def test_compose_home_broker_config_starts_a_real_mosquitto(tmp_path: Path):
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).is_file():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    lines = []
    for key, value in directives(inline_config(SERVICES["mosquitto"], "/mosquitto/config/mosquitto.conf")):
        if key == "listener":
            value = f"{port} 127.0.0.1"
        elif key == "persistence_location":
            value = f"{tmp_path}/"
        elif key == "log_dest":
            value = f"file {tmp_path}/mosquitto.log"
        lines.append(f"{key} {value}")
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.Popen([binary, "-c", str(conf)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "mosquitto exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)  # poll interval until Mosquitto listens
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


# --------------------------------------------------------------------------- systemd


def unit_entries() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_runs_the_console_script_with_valid_arguments():
    service = dict(unit_entries()["Service"])
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/soest-gateway/.venv/bin/soest-gateway"
    args = build_parser().parse_args(argv[1:])  # SystemExit on an unknown flag or command
    assert args.command == "run"
    assert args.config == "/etc/soest-gateway/topics.yaml"
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert str(EXIT_USAGE) in service["RestartPreventExitStatus"].split()
    assert service["User"] not in ("root", "0")
    assert service["WorkingDirectory"] == "/opt/soest-gateway"
    assert service["EnvironmentFile"].lstrip("-") == "/etc/soest-gateway/env"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= 5
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes"}.items():
        assert service[key] == value, key
    assert "WantedBy" in dict(unit_entries()["Install"])


def test_systemd_unit_environment_names_real_variables_and_the_state_directory():
    entries = unit_entries()["Service"]
    environment = dict(shlex.split(v)[0].split("=", 1) for k, v in entries if k == "Environment")
    unknown = {k for k in environment if k.startswith("GATEWAY_")} - known_env_names()
    assert not unknown, sorted(unknown)
    state_dir = dict(entries)["StateDirectory"]
    assert environment["GATEWAY_DATA_DIR"] == f"/var/lib/{state_dir}" == "/var/lib/soest-gateway"


def test_systemd_analyze_accepts_the_unit(installed: Installed, tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text(encoding="utf-8").replace("/opt/soest-gateway/.venv/bin/soest-gateway",
                                                    str(installed.script("soest-gateway")))
    unit = tmp_path / "soest-gateway.service"
    unit.write_text(text, encoding="utf-8")
    proc = run([analyze, "verify", str(unit)], timeout=30)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "soest-gateway.service" in line or "Unknown" in line or "Failed to parse" in line]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- docs


# `soest-gateway fetch`, but not `sudo -u soest-gateway sh` or `/var/lib/soest-gateway for`.
COMMAND_RE = re.compile(r"(?<!-u )(?<![\w./-])soest-gateway[ \t]+([a-z][a-z-]*)")


@pytest.mark.parametrize("path", [*DOCS, UNIT, COMPOSE, DOCKERFILE], ids=lambda p: p.name)
def test_deployment_texts_name_real_commands_and_variables(path: Path):
    text = path.read_text(encoding="utf-8")
    used = set(COMMAND_RE.findall(text)) | set(re.findall(r"/bin/soest-gateway[ \t]+([a-z][a-z-]*)", text))
    assert used <= subcommands(), f"no such soest-gateway command: {sorted(used - subcommands())}"
    variables = set(ENV_NAME_RE.findall(text))
    assert variables <= known_env_names(), f"no such variable: {sorted(variables - known_env_names())}"


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_deployment_docs_links_resolve(path: Path):
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: broken link {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{path.name}: no heading for #{anchor}"
