"""The manifest builders produce the objects the one-runner design depends on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_samples import SETTINGS, trader, walker

from backtest_kit_operator.manifests import (
    build_control_secret,
    build_inspection_pod,
    build_pvc,
    build_report_configmap,
    build_runner_pod,
    build_walker_job,
    runner_spec_hash,
    secret_token,
)
from backtest_kit_operator.models import SpecError, parse_trader_spec
from backtest_kit_operator.settings import OperatorSettings


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_the_runner_pod_has_a_deterministic_name_labels_and_a_controller_owner() -> None:
    pod = build_runner_pod(trader(), SETTINGS)
    meta = pod["metadata"]
    assert meta["name"] == "btc-runner"
    assert meta["namespace"] == "trading"
    assert meta["labels"]["app.kubernetes.io/name"] == "backtest-kit-runner"
    assert meta["labels"]["backtestkit.dev/livetrader"] == "btc"
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "backtestkit.dev/v1alpha1",
        "kind": "LiveTrader",
        "name": "btc",
        "uid": "uid-btc",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_the_runner_pod_restarts_on_failure_only_so_a_drained_runner_ends_succeeded() -> None:
    pod = build_runner_pod(trader(), SETTINGS)
    assert pod["spec"]["restartPolicy"] == "OnFailure"


def test_the_runner_pod_passes_the_spec_to_the_runner_as_contract_variables() -> None:
    pod = build_runner_pod(trader(), SETTINGS)
    (container,) = pod["spec"]["containers"]
    env = env_of(container)
    assert container["command"] == ["python", "-m", "backtest_kit_runner", "live"]
    assert env["BACKTEST_KIT_SYMBOL"] == "BTCUSDT"
    assert env["BACKTEST_KIT_STRATEGY"] == "sma-cross"
    assert json.loads(env["BACKTEST_KIT_PARAMS"]) == {"fast": 5, "slow": 20}
    assert env["BACKTEST_KIT_EXCHANGE"] == "synthetic"
    assert env["BACKTEST_KIT_STATE_DIR"] == "/var/lib/backtest-kit"
    assert env["BACKTEST_KIT_REPLAY_FROM"] == "2024-01-01T00:00:00Z"
    assert float(env["BACKTEST_KIT_SPEED"]) == 60
    assert "BACKTEST_KIT_UNTIL" not in env
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["image"] == "example.org/runner:test"


def test_the_runner_pod_mounts_the_state_claim_at_the_state_dir() -> None:
    pod = build_runner_pod(trader(), SETTINGS)
    assert {"name": "state", "persistentVolumeClaim": {"claimName": "btc-state"}} in pod["spec"]["volumes"]
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "state", "mountPath": "/var/lib/backtest-kit"} in mounts


def test_a_configmap_strategy_module_is_mounted_and_loaded_from_its_file() -> None:
    body = trader(strategy={"name": "mine", "module": {"configMap": {"name": "code", "key": "mine.py"}}})
    pod = build_runner_pod(body, SETTINGS)
    env = env_of(pod["spec"]["containers"][0])
    assert env["BACKTEST_KIT_LOAD"] == "/etc/backtest-kit/strategy/mine.py"
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "strategy")
    assert volume["configMap"] == {"name": "code", "items": [{"key": "mine.py", "path": "mine.py"}]}


def test_a_python_module_path_is_loaded_without_a_volume() -> None:
    pod = build_runner_pod(trader(strategy={"name": "m", "module": {"python": "acme.strategies"}}), SETTINGS)
    assert env_of(pod["spec"]["containers"][0])["BACKTEST_KIT_LOAD"] == "acme.strategies"
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["state", "control"]


def test_a_csv_exchange_becomes_the_runners_csv_path_argument() -> None:
    body = trader(exchange={"name": "csv", "options": {"path": "/data/btc.csv"}})
    assert env_of(build_runner_pod(body, SETTINGS)["spec"]["containers"][0])["BACKTEST_KIT_EXCHANGE"] == (
        "csv:/data/btc.csv"
    )


def test_runner_image_pull_policy_and_resources_come_from_the_spec_when_given() -> None:
    body = trader(
        runner={"image": "mine:1", "imagePullPolicy": "Always", "resources": {"limits": {"memory": "256Mi"}}}
    )
    (container,) = build_runner_pod(body, SETTINGS)["spec"]["containers"]
    assert container["image"] == "mine:1"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {"limits": {"memory": "256Mi"}}


def test_extra_pod_labels_from_the_settings_are_added_without_overriding_ours() -> None:
    settings = OperatorSettings(
        pod_labels={"backtestkit.dev/local-kubelet": "true", "backtestkit.dev/livetrader": "x"}
    )
    labels = build_runner_pod(trader(), settings)["metadata"]["labels"]
    assert labels["backtestkit.dev/local-kubelet"] == "true"
    assert labels["backtestkit.dev/livetrader"] == "btc"


def test_the_spec_hash_changes_with_parameters_and_image_but_not_with_metadata() -> None:
    base = runner_spec_hash(parse_trader_spec(trader()["spec"]), SETTINGS)
    params = runner_spec_hash(parse_trader_spec(trader(strategy={"name": "sma-cross"})["spec"]), SETTINGS)
    image = runner_spec_hash(parse_trader_spec(trader()["spec"]), OperatorSettings(runner_image="other:2"))
    assert len({base, params, image}) == 3
    pod = build_runner_pod(trader(), SETTINGS)
    assert pod["metadata"]["annotations"]["backtestkit.dev/spec-hash"] == base


def test_building_twice_gives_the_same_pod() -> None:
    assert build_runner_pod(trader(), SETTINGS) == build_runner_pod(trader(), SETTINGS)


def test_a_builder_refuses_an_invalid_spec() -> None:
    with pytest.raises(SpecError):
        build_runner_pod(trader(symbol="not valid"), SETTINGS)


def test_the_pvc_is_read_write_once_and_owned_only_when_its_reclaim_policy_is_delete() -> None:
    deleting = build_pvc(trader())
    assert deleting["metadata"]["name"] == "btc-state"
    assert deleting["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert deleting["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    assert deleting["metadata"]["ownerReferences"][0]["uid"] == "uid-btc"
    retained = build_pvc(trader(storage={"size": "1Gi", "storageClassName": "fast"}))
    assert "ownerReferences" not in retained["metadata"]
    assert retained["spec"]["storageClassName"] == "fast"


def test_the_walker_job_is_indexed_with_one_completion_per_strategy() -> None:
    job = build_walker_job(walker(), SETTINGS)
    assert job["metadata"]["name"] == "jan-job"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "Walker"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == 3
    assert spec["parallelism"] == 3  # never more than there are strategies
    assert spec["backoffLimitPerIndex"] == 1
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailIndex"
    assert rule["onExitCodes"]["values"] == [2]
    template = spec["template"]
    assert template["metadata"]["labels"]["backtestkit.dev/walker"] == "jan"
    assert template["spec"]["restartPolicy"] == "Never"
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["python", "-m", "backtest_kit_runner", "walker-task"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    # a task failing before it writes its result still reports why (the tail of its log)
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert spec["activeDeadlineSeconds"] == SETTINGS.walker_active_deadline
    assert spec["ttlSecondsAfterFinished"] == SETTINGS.walker_ttl_after_finished
    assert container["resources"] == SETTINGS.walker_resources


def test_the_walker_job_carries_tasks_frame_and_metric_for_the_runner() -> None:
    job = build_walker_job(walker(parallelism=2), SETTINGS)
    assert job["spec"]["parallelism"] == 2
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert json.loads(env["BACKTEST_KIT_TASKS"]) == [
        {"label": "fast", "strategy": "sma-cross", "params": {"fast": 5}},
        {"label": "slow", "strategy": "sma-cross", "params": {"fast": 20}},
        {"label": "momentum", "strategy": "momentum", "params": {}},
    ]
    assert env["BACKTEST_KIT_FRAME"] == "2024-01-01T00:00:00Z..2024-01-02T00:00:00Z"
    assert env["BACKTEST_KIT_FRAME_INTERVAL"] == "1m"
    assert env["BACKTEST_KIT_METRIC"] == "sharpeRatio"
    assert env["BACKTEST_KIT_SYMBOL"] == "BTCUSDT"


def test_the_report_configmap_is_owned_by_the_walker_and_holds_json() -> None:
    cm = build_report_configmap(walker(), {"bestStrategy": "fast"})
    assert cm["metadata"]["name"] == "jan-report"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-jan"
    assert json.loads(cm["data"]["report.json"]) == {"bestStrategy": "fast"}


def test_every_built_manifest_is_a_valid_kubernetes_object_in_strict_mode() -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for manifest in (
        build_runner_pod(
            trader(strategy={"name": "m", "module": {"configMap": {"name": "c", "key": "m.py"}}}), SETTINGS
        ),
        build_pvc(trader()),
        build_walker_job(walker(), SETTINGS),
        build_report_configmap(walker(), {"bestStrategy": "fast"}),
    ):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_runner_pod_mounts_its_control_token_and_gets_default_resources() -> None:
    pod = build_runner_pod(trader(), SETTINGS)
    (container,) = pod["spec"]["containers"]
    env = env_of(container)
    assert env["BACKTEST_KIT_CONTROL_TOKEN_FILE"] == "/etc/backtest-kit/control/token"
    assert "BACKTEST_KIT_DRAIN" not in env
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "control")
    assert volume["secret"]["secretName"] == "btc-control"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "control")
    assert mount == {"name": "control", "mountPath": "/etc/backtest-kit/control", "readOnly": True}
    assert container["resources"] == SETTINGS.runner_resources


def test_a_runner_pod_started_during_a_deletion_drains_from_its_first_tick_with_the_same_spec_hash() -> None:
    plain, draining = build_runner_pod(trader(), SETTINGS), build_runner_pod(trader(), SETTINGS, drain=True)
    assert env_of(draining["spec"]["containers"][0])["BACKTEST_KIT_DRAIN"] == "1"
    key = "backtestkit.dev/spec-hash"
    assert draining["metadata"]["annotations"][key] == plain["metadata"]["annotations"][key]


def test_the_inspection_pod_reads_the_volume_read_only_on_the_runners_node() -> None:
    runner = {"metadata": {"uid": "r1"}, "spec": {"nodeName": "n1"}}
    pod = build_inspection_pod(trader(), SETTINGS, runner_pod=runner)
    spec = pod["spec"]
    assert spec["nodeName"] == "n1" and spec["restartPolicy"] == "Never"
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "btc-state", "readOnly": True}
    (container,) = spec["containers"]
    assert container["command"][-2:] == ["state", "show"]
    assert container["volumeMounts"][0]["readOnly"] is True
    assert pod["metadata"]["annotations"]["backtestkit.dev/inspected-runner"] == "r1"


def test_the_control_secret_is_owned_by_its_trader_and_round_trips_the_token() -> None:
    secret = build_control_secret(trader(), "tok")
    assert secret["metadata"]["name"] == "btc-control"
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "LiveTrader"
    assert secret_token(secret) == "tok"
