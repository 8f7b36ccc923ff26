"""The Dockerfile agrees with what the operator puts in pods and with the runner's own options.

There is no container engine here, so the Dockerfile is parsed and its final stage checked:
entry point, user, working directory, environment, port; then the pods and Jobs the operator
builds are fed to the runner's option parser exactly as the kubelet would start them.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from backtest_kit_runner.http_api import build_app
from backtest_kit_runner.options import (
    COMMANDS,
    DEFAULT_HTTP_PORT,
    DEFAULT_STATE_DIR,
    TraderOptions,
    WalkerTaskOptions,
    parse_options,
)

from .test_http_api import Control

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ["python", "-m", "backtest_kit_runner"]


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


class Dockerfile:
    def __init__(self, path: Path) -> None:
        steps = instructions(path.read_text(encoding="utf-8"))
        self.args = {}
        for word, rest in steps:
            if word == "ARG" and "=" in rest:
                name, value = rest.split("=", 1)
                self.args[name] = value
            if word == "FROM":
                break
        starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
        self.stages = len(starts)
        self.build = steps[starts[0] : starts[-1]]
        self.final = steps[starts[-1] :]

    def last(self, word: str) -> str:
        values = [rest for w, rest in self.final if w == word]
        assert values, f"no {word} in the final stage"
        return values[-1]

    def all(self, word: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
        return [rest for w, rest in (stage or self.final) if w == word]

    def base_image(self) -> str:
        image = self.last("FROM").split()[0]
        for name, value in self.args.items():
            image = image.replace("${" + name + "}", value)
        return image

    def env(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for rest in self.all("ENV"):
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                found[key] = value
        return found


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile(ROOT / "Dockerfile")


def manifests() -> Any:
    if importlib.util.find_spec("backtest_kit_operator.manifests") is None:
        pytest.skip("the operator's manifests module is not there yet")
    import backtest_kit_operator.manifests as m
    from backtest_kit_operator.settings import OperatorSettings

    return m, OperatorSettings()


def sample(name: str) -> dict[str, Any]:
    body = yaml.safe_load((ROOT / "crds" / "samples" / name).read_text(encoding="utf-8"))
    body["metadata"].update(namespace="default", uid="0b5f3e4c-0000-4000-8000-000000000001")
    return dict(body)


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


class TestTheImage:
    def test_it_is_a_slim_python_3_11_built_in_two_stages(self, dockerfile: Dockerfile) -> None:
        assert dockerfile.base_image().startswith("python:3.11-slim")
        assert dockerfile.stages == 2
        copied = " ".join(dockerfile.all("COPY", dockerfile.build))
        assert "runner" in copied and "operator" in copied and "pyproject.toml" in copied
        assert any("pip install ." in run for run in dockerfile.all("RUN", dockerfile.build))

    def test_the_entry_point_is_the_runner(self, dockerfile: Dockerfile) -> None:
        assert json.loads(dockerfile.last("ENTRYPOINT")) == ENTRYPOINT
        assert json.loads(dockerfile.last("CMD")) == ["live"]

    def test_it_runs_as_a_numeric_non_root_user(self, dockerfile: Dockerfile) -> None:
        uid, _, gid = dockerfile.last("USER").partition(":")
        assert uid.isdigit() and int(uid) == 10001 and gid == "10001"

    def test_it_works_on_a_read_only_root_filesystem(self, dockerfile: Dockerfile) -> None:
        env = dockerfile.env()
        assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
        assert env["PATH"].startswith("/opt/venv/bin:")
        assert any(
            "compileall" in run for run in dockerfile.all("RUN", dockerfile.build)
        )  # no .pyc at run time

    def test_the_state_dir_is_the_workdir_and_owned_by_the_user(self, dockerfile: Dockerfile) -> None:
        assert dockerfile.last("WORKDIR") == str(DEFAULT_STATE_DIR)
        assert any(f"chown 10001:10001 {DEFAULT_STATE_DIR}" in run for run in dockerfile.all("RUN"))

    def test_the_http_port_is_the_runner_default(self, dockerfile: Dockerfile) -> None:
        assert dockerfile.last("EXPOSE") == str(DEFAULT_HTTP_PORT)


class TestTheOperatorsRunnerPod:
    @pytest.mark.parametrize("name", ["livetrader-replay.yaml", "livetrader-binance.yaml"])
    def test_the_pod_starts_the_image_entry_point_with_options_the_runner_accepts(
        self, dockerfile: Dockerfile, name: str
    ) -> None:
        m, settings = manifests()
        pod = m.build_runner_pod(sample(name), settings)
        container = pod["spec"]["containers"][0]
        command = container["command"] + container.get("args", [])
        assert command[:3] == json.loads(dockerfile.last("ENTRYPOINT"))
        assert command[3] in COMMANDS
        env = container_env(container)
        accepted = {spec.env_name for spec in COMMANDS[command[3]].SPECS}
        assert set(env) <= accepted, f"the runner ignores {sorted(set(env) - accepted)}"
        options = parse_options(command[3:], env)
        assert isinstance(options, TraderOptions)
        assert options.state_dir == Path(m.STATE_DIR) == DEFAULT_STATE_DIR
        mounts = {vm["mountPath"] for vm in container["volumeMounts"]}
        assert str(options.state_dir) in mounts
        assert container["ports"][0]["containerPort"] == options.http_port == m.HTTP_PORT

    def test_the_probes_point_at_endpoints_the_runner_serves(self) -> None:
        m, settings = manifests()
        container = m.build_runner_pod(sample("livetrader-replay.yaml"), settings)["spec"]["containers"][0]
        served = {
            r.resource.canonical for r in build_app(Control()).router.routes() if r.resource is not None
        }
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] in served
            assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"]

    def test_the_replay_sample_asks_for_a_strategy_the_image_ships(self) -> None:
        m, settings = manifests()
        from backtest_kit_runner.loading import BUILTIN_MODULES

        env = container_env(
            m.build_runner_pod(sample("livetrader-replay.yaml"), settings)["spec"]["containers"][0]
        )
        assert env["BACKTEST_KIT_STRATEGY"] in BUILTIN_MODULES


class TestTheOperatorsWalkerJob:
    def test_each_index_parses_and_writes_to_the_termination_message(self, dockerfile: Dockerfile) -> None:
        m, settings = manifests()
        job = m.build_walker_job(sample("walker.yaml"), settings)
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["command"][:3] == json.loads(dockerfile.last("ENTRYPOINT"))
        env = container_env(container)
        accepted = {spec.env_name for spec in COMMANDS[container["command"][3]].SPECS}
        assert set(env) <= accepted, f"the runner ignores {sorted(set(env) - accepted)}"
        for index in range(job["spec"]["completions"]):
            options = parse_options(container["command"][3:], {**env, "JOB_COMPLETION_INDEX": str(index)})
            assert isinstance(options, WalkerTaskOptions)
            assert str(options.output) == container["terminationMessagePath"]


class TestTheOperatorImage:
    def test_the_charts_operator_command_is_a_module_in_the_image(self, dockerfile: Dockerfile) -> None:
        deployment = (ROOT / "charts" / "backtest-kit-operator" / "templates" / "deployment.yaml").read_text(
            encoding="utf-8"
        )
        assert 'command: ["python", "-m", "backtest_kit_operator"]' in deployment
        assert importlib.util.find_spec("backtest_kit_operator.__main__") is not None

    def test_the_chart_runs_the_operator_as_the_images_user(self, dockerfile: Dockerfile) -> None:
        values = yaml.safe_load(
            (ROOT / "charts" / "backtest-kit-operator" / "values.yaml").read_text(encoding="utf-8")
        )
        uid = int(dockerfile.last("USER").partition(":")[0])
        assert values["podSecurityContext"]["runAsUser"] == uid
        assert values["securityContext"]["readOnlyRootFilesystem"] is True
