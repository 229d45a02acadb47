"""The container files agree with each other, without building anything (runs in every test run).

examples/docker-compose.yml, the README's and the Dockerfile's `docker run` lines, and
scripts/build-image all name the same image, mount the Dockerfile's volumes, set only variables
the gateway reads (with the Dockerfile's values where they repeat them) and carry the same health
check. The image installs exactly requirements.lock, and that lock covers pyproject.toml.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tests.container.conftest import ADDON_IMAGE, IMAGE
from tests.test_packaging import DOCKER, known_env_names, one, runtime_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "examples" / "docker-compose.yml").read_text(encoding="utf-8"))
GATEWAYS = ("gateway", "city-gateway")
LOCK = ROOT / "requirements.lock"
DURATION = {"s": 1, "m": 60, "h": 3600}


def docker_runs(text: str) -> list[list[str]]:
    """Every `docker run ...` command of a text (shell continuations joined, comment marks dropped)."""
    joined = re.sub(r"\\\n\s*(#\s*)?", " ", text)
    runs = []
    for line in joined.splitlines():
        line = line.strip().lstrip("#").strip()
        if line.startswith("docker run "):
            runs.append(shlex.split(line))
    return runs


def run_options(argv: list[str]) -> tuple[dict[str, list[str]], str]:
    """(option -> values, image) of a `docker run` argv."""
    options: dict[str, list[str]] = {}
    args = argv[2:]
    i = 0
    while args[i].startswith("-"):
        flag = args[i]
        if flag in ("-d", "--rm", "-it"):
            i += 1
            continue
        options.setdefault(flag, []).append(args[i + 1])
        i += 2
    return options, args[i]


def seconds(value: str) -> float:
    return sum(float(n) * DURATION[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", value))


def readme_runs() -> list[list[str]]:
    return docker_runs((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_and_the_dockerfile_show_the_same_docker_run():
    header = "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("#"))
    (from_dockerfile,) = docker_runs(header)
    assert from_dockerfile in readme_runs()


def test_compose_readme_dockerfile_and_build_script_name_the_same_image():
    names = {COMPOSE["services"][name]["image"] for name in GATEWAYS}
    names |= {run_options(argv)[1] for argv in readme_runs()}
    names.add(IMAGE)
    assert names == {"soest-mqtt-gateway"}
    script = (ROOT / "scripts" / "build-image").read_text()
    assert f'tag="${{tag:-{IMAGE}}}"' in script
    assert f'tag="${{tag:-{ADDON_IMAGE}}}"' in script
    assert f"docker build -t {IMAGE} ." in (ROOT / "Dockerfile").read_text()


def test_compose_and_readme_mount_the_dockerfiles_volumes_with_the_images_owner():
    volumes = set(yaml.safe_load(one("VOLUME").args))
    for name in GATEWAYS:
        targets = {spec.split(":")[1] for spec in COMPOSE["services"][name]["volumes"]}
        # /config is covered by the config file mounted into it; /data by the named volume.
        assert {t if t in volumes else str(Path(t).parent) for t in targets} == volumes, name
        data = next(spec.split(":")[0] for spec in COMPOSE["services"][name]["volumes"] if spec.endswith(":/data"))
        assert data in COMPOSE["volumes"], "the data must live in a named volume (seeded with owner 10001)"
    for argv in readme_runs():
        options, _ = run_options(argv)
        assert {spec.split(":")[1] for spec in options.get("-v", [])} <= volumes | {"/config/topics.yaml"}
        assert any(spec.split(":")[1] == "/data" for spec in options.get("-v", [])), argv


def test_compose_and_readme_set_only_real_variables_and_repeat_the_images_values():
    image_env = {k: v for k, v in runtime_env().items() if k.startswith("GATEWAY_")}
    for name in GATEWAYS:
        env = {k: str(v) for k, v in COMPOSE["services"][name]["environment"].items()}
        assert set(env) <= known_env_names(), name
        for key in set(env) & set(image_env):
            assert env[key] == image_env[key], f"{name}: {key}={env[key]}, the image says {image_env[key]}"
        # The port the compose file publishes is the one the image exposes and listens on.
        container_ports = {p.rsplit(":", 1)[1] for p in COMPOSE["services"][name]["ports"]}
        assert container_ports == {one("EXPOSE").args} == {env.get("GATEWAY_HTTP_PORT", image_env["GATEWAY_HTTP_PORT"])}
    for argv in readme_runs():
        options, _ = run_options(argv)
        names = {spec.split("=", 1)[0] for spec in options.get("-e", [])}
        assert names <= known_env_names(), argv
        assert {p.rsplit(":", 1)[1] for p in options.get("-p", [])} <= {one("EXPOSE").args}


def test_compose_repeats_the_images_healthcheck():
    options, _, probe = one("HEALTHCHECK").args.partition(" CMD ")
    image = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
    for name in GATEWAYS:
        check = COMPOSE["services"][name]["healthcheck"]
        assert check["test"] == ["CMD", *yaml.safe_load(probe)], name
        for key in ("interval", "timeout", "start-period"):
            assert seconds(check[key.replace("-", "_")]) == seconds(image[key]), f"{name}: {key}"
        assert check["retries"] == int(image["retries"])


# --------------------------------------------------------------------------- the lock


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, sha256 hashes) from requirements.lock."""
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text(encoding="utf-8"))
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec, *hashes = line.split(" --hash=")
        requirement = Requirement(spec.strip())
        (pin,) = requirement.specifier
        assert pin.operator == "==", f"requirements.lock: {requirement} is not pinned with =="
        assert hashes, f"requirements.lock: {requirement.name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h.strip()) for h in hashes), requirement.name
        out[re.sub(r"[-_.]+", "-", requirement.name).lower()] = (Version(pin.version), hashes)
    return out


def test_the_lock_pins_every_dependency_within_pyprojects_range():
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert key in pins, f"{requirement.name} is in pyproject.toml but not in requirements.lock (rerun its command)"
        assert requirement.specifier.contains(pins[key][0]), f"requirements.lock pins {key} {pins[key][0]}, " \
                                                             f"outside pyproject.toml's {requirement.specifier}"


def test_both_images_install_exactly_the_lock_from_wheels_with_hashes():
    builder = [i.args for i in DOCKER if i.keyword == "RUN" and i.stage == 0]
    addon = (ROOT / "addon" / "Dockerfile").read_text()
    for text in (" ".join(builder), re.sub(r"\\\n\s*", " ", addon)):
        assert "--require-hashes --only-binary=:all:" in text
        assert re.search(r"-r \S*requirements\.lock", text)
        # The gateway's own package then comes without dependencies: nothing unlocked sneaks in.
        installs = re.findall(r"pip --python /opt/venv/bin/python install ([^&]+)", text)
        assert len(installs) == 2, installs
        assert installs[1].startswith("--no-deps "), installs
    copied = [i.args for i in DOCKER if i.keyword == "COPY" and i.stage == 0]
    assert any("requirements.lock" in args.split() for args in copied)
