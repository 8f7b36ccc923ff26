"""The shipped samples (crds/samples/ and the chart's NOTES) are accepted by the API server and trade.

Each sample is checked the way the API server would check it on create (pruning, defaults, the
structural schema and the CEL rules of the CRD in crds/, through the fake API server's own schema
code); every ConfigMap a sample names is shipped next to it and is a valid ConfigMap; the strategy
module in it loads with the sample's parameters; and the replay sample's symbol, strategy and
exchange open and close positions within the first day of its replay, in an in-process backtest.
"""

from __future__ import annotations

import copy
import re
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import backtest_kit as bk
from backtest_kit.registry import FrameSchema
from backtest_kit_operator.models import parse_trader_spec, parse_walker_spec
from backtest_kit_runner.loading import FILE_MODULE_PACKAGE, load_module, resolve_strategy

from ..kubeapi import schema as kube_schema
from .chart_support import KUBE_VERSIONS, REPO_CRDS_DIR, notes

SAMPLES_DIR = REPO_CRDS_DIR / "samples"
GROUP = "backtestkit.dev"
#: The candles the built-in synthetic exchange serves (docs: Troubleshooting).
SYNTHETIC_SYMBOL = "SYNUSDT"
SYNTHETIC_FIRST_DAY, SYNTHETIC_LAST_DAY = "2023-12-20", "2025-01-15"


def _documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                yield path, doc


SAMPLES = list(_documents())
CUSTOM = [(p, d) for p, d in SAMPLES if str(d["apiVersion"]).startswith(f"{GROUP}/")]
CONFIG_MAPS = {d["metadata"]["name"]: d for _, d in SAMPLES if d["kind"] == "ConfigMap"}


def _ids(item: tuple[Path, dict[str, Any]]) -> str:
    return f"{item[0].name}:{item[1]['kind']}/{item[1]['metadata']['name']}"


def _openapi_schema(kind: str, api_version: str) -> dict[str, Any]:
    for path in REPO_CRDS_DIR.glob(f"*.{GROUP}.yaml"):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        if crd["spec"]["names"]["kind"] != kind:
            continue
        for version in crd["spec"]["versions"]:
            if f"{crd['spec']['group']}/{version['name']}" == api_version:
                return dict(version["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD in crds/ serves {kind} {api_version}")


def api_server_causes(obj: dict[str, Any]) -> list[str]:
    """What the API server would refuse in ``obj`` on create, in its words (empty: accepted)."""
    schema = _openapi_schema(obj["kind"], obj["apiVersion"])
    created = copy.deepcopy(obj)
    created["metadata"].setdefault("namespace", "default")
    kube_schema.prune(created, schema, root=True)
    kube_schema.apply_defaults(created, schema)
    causes = kube_schema.validate(created, schema)
    causes += kube_schema.validate_rules(created, kube_schema.MISSING, schema)
    return [f"{c.field}: {c.message}" for c in causes]


def _module_ref(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc["spec"]
    module = spec.get("module") if doc["kind"] == "Walker" else spec["strategy"].get("module")
    return (module or {}).get("configMap")


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(f"{day}T00:00:00+00:00").timestamp() * 1000)


class TestEverySampleIsAcceptedByTheCluster:
    def test_the_samples_hold_the_replay_the_binance_the_walker_and_the_grid_examples(self) -> None:
        names = {(d["kind"], d["metadata"]["name"]) for _, d in CUSTOM}
        assert names == {
            ("LiveTrader", "syn-demo"),
            ("LiveTrader", "eth-breakout"),
            ("Walker", "syn-january"),
            ("Walker", "syn-january-grid"),
        }

    @pytest.mark.parametrize("sample", CUSTOM, ids=_ids)
    def test_each_sample_passes_the_crd_schema_and_its_rules(
        self, sample: tuple[Path, dict[str, Any]]
    ) -> None:
        assert api_server_causes(sample[1]) == []

    @pytest.mark.parametrize("sample", CUSTOM, ids=_ids)
    def test_each_sample_spec_is_one_the_operator_accepts(self, sample: tuple[Path, dict[str, Any]]) -> None:
        doc = sample[1]
        (parse_trader_spec if doc["kind"] == "LiveTrader" else parse_walker_spec)(doc["spec"])

    def test_the_schema_check_is_real_it_refuses_a_broken_sample(self) -> None:
        _, replay = next(s for s in CUSTOM if s[1]["metadata"]["name"] == "syn-demo")
        broken = copy.deepcopy(replay)
        broken["spec"]["symbol"] = "syn-usdt"
        broken["spec"]["replay"]["until"] = "2023-01-01T00:00:00Z"
        causes = api_server_causes(broken)
        assert any(c.startswith("spec.symbol") for c in causes), causes
        assert any("replay.until must be after replay.from" in c for c in causes), causes

    @pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
    def test_every_built_in_object_among_the_samples_validates_strictly(self, kube_version: str) -> None:
        built_in = [d for _, d in SAMPLES if not str(d["apiVersion"]).startswith(f"{GROUP}/")]
        assert built_in, "the samples ship no ConfigMap"
        for doc in built_in:
            kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.fixture(scope="module")
def module_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Path]]:
    """Every ConfigMap key of the samples as a file, the way the runner pod mounts it."""
    mounted = tmp_path_factory.mktemp("strategies")
    files = {}
    for name, config_map in CONFIG_MAPS.items():
        for key, text in config_map["data"].items():
            files[name, key] = mounted / name / key
            files[name, key].parent.mkdir()
            files[name, key].write_text(text, encoding="utf-8")
    yield files
    for path in files.values():
        sys.modules.pop(f"{FILE_MODULE_PACKAGE}.{path.stem}", None)


class TestEveryReferencedConfigMapIsShipped:
    def test_each_module_config_map_a_sample_names_is_in_the_samples_with_that_key(self) -> None:
        refs = [ref for _, d in CUSTOM if (ref := _module_ref(d))]
        assert refs, "no sample runs strategy code from a ConfigMap"
        for ref in refs:
            assert ref["name"] in CONFIG_MAPS, f"ConfigMap {ref['name']} is not shipped in crds/samples/"
            assert ref["key"] in CONFIG_MAPS[ref["name"]]["data"], ref

    def test_the_shipped_strategy_module_loads_and_accepts_the_samples_parameters(
        self, module_files: dict[tuple[str, str], Path]
    ) -> None:
        for _, doc in CUSTOM:
            ref = _module_ref(doc)
            if not ref or doc["kind"] != "LiveTrader":
                continue
            path = module_files[ref["name"], ref["key"]]
            strategy = doc["spec"]["strategy"]
            loaded = resolve_strategy(
                strategy["name"],
                strategy.get("parameters") or {},
                [load_module(str(path))],
                registered=bk.list_strategies,
            )
            assert loaded.name == strategy["name"] in bk.list_strategies()
            assert loaded.module is not None and loaded.module.endswith(path.stem)

    async def test_the_shipped_strategy_module_trades_on_the_synthetic_market(
        self, module_files: dict[tuple[str, str], Path]
    ) -> None:
        path = module_files["breakout-strategy", "breakout.py"]
        loaded = resolve_strategy("breakout", {}, [load_module(str(path))], registered=bk.list_strategies)
        frame = FrameSchema("two-days", "1m", _ms("2024-03-01"), _ms("2024-03-03"))
        run = await bk.default_engine().backtest.execute(
            SYNTHETIC_SYMBOL, strategy=loaded.name, exchange="synthetic", frame=frame
        )
        assert run.stats()["totalSignals"] > 0


class TestTheReplaySampleTrades:
    def _replay_sample(self) -> dict[str, Any]:
        (doc,) = [d for _, d in CUSTOM if d["kind"] == "LiveTrader" and d["spec"].get("replay")]
        return doc

    def test_it_replays_the_symbol_of_the_synthetic_exchange_within_the_days_it_covers(self) -> None:
        spec = self._replay_sample()["spec"]
        assert spec["exchange"]["name"] == "synthetic"
        assert spec["symbol"] == SYNTHETIC_SYMBOL
        replay = spec["replay"]
        assert SYNTHETIC_FIRST_DAY <= replay["from"][:10] < replay["until"][:10] <= SYNTHETIC_LAST_DAY

    async def test_its_symbol_and_strategy_open_and_close_positions_on_the_first_day(self) -> None:
        spec = self._replay_sample()["spec"]
        strategy = spec["strategy"]
        loaded = resolve_strategy(
            strategy["name"], strategy.get("parameters") or {}, [], registered=bk.list_strategies
        )
        start = _ms(spec["replay"]["from"][:10])
        frame = FrameSchema("first-day", "1m", start, start + 86_400_000)
        run = await bk.default_engine().backtest.execute(
            spec["symbol"], strategy=loaded.name, exchange=spec["exchange"]["name"], frame=frame
        )
        assert run.stats()["totalSignals"] >= 2
        assert run.stats()["winCount"] + run.stats()["lossCount"] == run.stats()["totalSignals"]

    def test_the_notes_start_exactly_the_replay_sample(self) -> None:
        block = re.search(r"cat <<'EOF' \| kubectl apply -n \S+ -f -\n(.*?)\n\s*EOF\n", notes(), re.DOTALL)
        assert block, "the notes carry no LiveTrader sample"
        in_notes = yaml.safe_load(textwrap.dedent(block.group(1)))
        sample = self._replay_sample()
        assert in_notes["spec"] == sample["spec"]
        assert in_notes["metadata"]["name"] == sample["metadata"]["name"]
        assert f"kubectl describe lt {sample['metadata']['name']}" in notes()
