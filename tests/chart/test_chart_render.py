"""The chart lints, renders and produces objects the Kubernetes API (and the Prometheus Operator) accepts."""

from __future__ import annotations

import json
import os
import re
import textwrap
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from .chart_support import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    PROMETHEUS_OPERATOR_API,
    REPO_CRDS_DIR,
    SCENARIOS,
    SCHEMAS_DIR,
    chart,
    chart_crd_files,
    notes,
    objects,
    of_kind,
    one,
    repo_crd_files,
    scenario_objects,
)

MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
# Kinds whose schema kubernetes-validate cannot know; checked against schemas written for this chart.
VENDORED_SCHEMAS = {
    "ServiceMonitor": "servicemonitor.schema.json",
    "PodMonitor": "podmonitor.schema.json",
    "PrometheusRule": "prometheusrule.schema.json",
    "KopfPeering": "kopfpeering.schema.json",
    "ClusterKopfPeering": "clusterkopfpeering.schema.json",
}


def _vendored_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS_DIR / VENDORED_SCHEMAS[kind]).read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"


class TestHelmLint:
    def test_the_chart_lints_without_any_message_in_strict_mode_with_default_values(self) -> None:
        report = helm_python.lint(
            CHART_DIR, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[0]}"
        )
        assert report["errors"] == []
        assert report["messages"] == []

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_the_chart_lints_without_any_message_in_strict_mode_for_every_value_preset(
        self, scenario: str
    ) -> None:
        report = helm_python.lint(CHART_DIR, SCENARIOS[scenario], strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        assert report["messages"] == []

    def test_the_chart_is_an_api_v2_application_chart_of_app_version_0_1_0_with_an_icon(self) -> None:
        meta = chart().metadata
        assert meta["apiVersion"] == "v2"
        assert meta["appVersion"] == "0.1.0"
        assert meta.get("type", "application") == "application"
        assert meta["icon"].startswith("https://")

    def test_the_oldest_supported_kubernetes_version_satisfies_the_charts_kube_version(self) -> None:
        report = helm_python.lint(CHART_DIR, strict=True, kube_version=f"v{KUBE_VERSIONS[-1]}")
        assert report["messages"] == []


class TestRendering:
    def test_default_values_render_the_operator_its_service_accounts_rbac_and_metrics_service(self) -> None:
        kinds = sorted(o["kind"] for o in scenario_objects("defaults"))
        assert kinds == sorted(
            [
                "ClusterKopfPeering",  # peering is on by default: one active operator
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "NetworkPolicy",  # runner pods admit only the operator (and Prometheus)
                "Service",
                "ServiceAccount",
                "ServiceAccount",
            ]
        )

    def test_every_optional_feature_renders_when_switched_on(self) -> None:
        kinds = {o["kind"] for o in scenario_objects("all-features")}
        assert {*MONITORING_KINDS, "ConfigMap", "KopfPeering", "Role", "RoleBinding"} <= kinds

    def test_every_rendered_object_has_a_name_and_namespaced_objects_have_a_namespace(self) -> None:
        cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
        for scenario in SCENARIOS:
            for obj in scenario_objects(scenario):
                assert obj["metadata"]["name"], _describe(obj)
                if obj["kind"] not in cluster_scoped:
                    assert obj["metadata"].get("namespace"), _describe(obj)

    def test_no_two_rendered_objects_share_kind_namespace_and_name(self) -> None:
        for scenario in SCENARIOS:
            keys = [
                (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                for o in scenario_objects(scenario)
            ]
            assert len(keys) == len(set(keys)), scenario

    def test_the_notes_tell_the_user_how_to_start_watch_and_safely_delete_a_live_trader(self) -> None:
        text = notes()
        assert "kind: LiveTrader" in text
        assert "kubectl get lt" in text
        assert "kubectl delete lt" in text
        assert "backtestkit.dev/abandon-drain" in text
        assert "backtestkit.dev/drain" in text

    def test_the_sample_live_trader_in_the_notes_satisfies_the_live_trader_crd_schema(self) -> None:
        if not repo_crd_files():
            pytest.skip(f"{REPO_CRDS_DIR} holds no CRDs yet")
        block = re.search(r"cat <<'EOF' \| kubectl apply -n \S+ -f -\n(.*?)\n\s*EOF\n", notes(), re.DOTALL)
        assert block, "the notes carry no LiveTrader sample"
        sample = yaml.safe_load(textwrap.dedent(block.group(1)))
        crds = [doc for crd in chart().crds for doc in yaml.safe_load_all(crd["data"]) if doc]
        crd = next(c for c in crds if c["spec"]["names"]["kind"] == sample["kind"])
        version = next(
            v
            for v in crd["spec"]["versions"]
            if f"{crd['spec']['group']}/{v['name']}" == sample["apiVersion"]
        )
        errors = [
            e.message
            for e in jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).iter_errors(sample)
        ]
        assert errors == []

    def test_the_notes_name_the_watched_namespace_in_the_commands_for_a_namespace_list(self) -> None:
        assert "kubectl get lt -n trading-a -w" in notes(SCENARIOS["all-features"])


class TestPrometheusOperatorGating:
    ENABLED: dict[str, Any] = {  # noqa: RUF012
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        }
    }

    def test_monitoring_objects_are_off_by_default_even_when_the_api_exists(self) -> None:
        objs = objects({}, api_versions=[PROMETHEUS_OPERATOR_API])
        assert not [o for o in objs if o["kind"] in MONITORING_KINDS]

    def test_enabled_monitoring_objects_are_skipped_when_the_cluster_lacks_the_monitoring_api(self) -> None:
        objs = objects(self.ENABLED)
        assert not [o for o in objs if o["kind"] in MONITORING_KINDS]
        assert "monitoring.coreos.com/v1 was not found" in notes(self.ENABLED)

    def test_enabled_monitoring_objects_render_when_the_cluster_serves_the_monitoring_api(self) -> None:
        objs = objects(self.ENABLED, api_versions=[PROMETHEUS_OPERATOR_API])
        assert sorted(o["kind"] for o in objs if o["kind"] in MONITORING_KINDS) == sorted(MONITORING_KINDS)

    def test_enabled_monitoring_objects_render_without_the_api_when_forced_by_a_value(self) -> None:
        values = {"monitoring": {**self.ENABLED["monitoring"], "assumePrometheusOperator": True}}
        assert sorted(o["kind"] for o in objects(values) if o["kind"] in MONITORING_KINDS) == sorted(
            MONITORING_KINDS
        )

    def test_peering_objects_render_automatically_only_when_the_kopf_api_is_served(self) -> None:
        values = {"peering": {"enabled": True, "createObjects": "auto"}}
        assert not of_kind(objects(values), "ClusterKopfPeering")
        assert len(of_kind(objects(values, api_versions=["kopf.dev/v1"]), "ClusterKopfPeering")) == 1
        never = {"peering": {"enabled": True, "createObjects": "never"}}
        assert not of_kind(objects(never, api_versions=["kopf.dev/v1"]), "ClusterKopfPeering")


class TestKubernetesSchemas:
    @pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_every_built_in_object_validates_strictly_against_the_kubernetes_openapi_schema(
        self, scenario: str, kube_version: str
    ) -> None:
        checked = 0
        for obj in scenario_objects(scenario):
            if obj["kind"] in VENDORED_SCHEMAS:
                continue
            try:
                kubernetes_validate.validate(obj, kube_version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{_describe(obj)} is invalid for Kubernetes {kube_version}: {error.message}")
            checked += 1
        assert checked >= 6  # two ServiceAccounts, the role and its binding, Deployment, Service

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_every_prometheus_operator_and_kopf_object_validates_against_the_vendored_schemas(
        self, scenario: str
    ) -> None:
        for obj in scenario_objects(scenario):
            if obj["kind"] in VENDORED_SCHEMAS:
                errors = [e.message for e in _vendored_validator(obj["kind"]).iter_errors(obj)]
                assert errors == [], _describe(obj)

    def test_the_vendored_schemas_reject_a_misspelt_monitoring_field(self) -> None:
        monitor = one(scenario_objects("all-features"), "ServiceMonitor")
        broken = json.loads(json.dumps(monitor))
        broken["spec"]["endpoints"][0]["scrapeInterval"] = broken["spec"]["endpoints"][0].pop("interval")
        assert list(_vendored_validator("ServiceMonitor").iter_errors(broken))

    @pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
    def test_the_charts_crds_validate_strictly_as_custom_resource_definitions(
        self, kube_version: str
    ) -> None:
        crds = chart().crds
        if not repo_crd_files():
            pytest.skip(f"{REPO_CRDS_DIR} holds no CRDs yet")
        assert crds, "the chart ships no CRDs"
        for crd in crds:
            for doc in yaml.safe_load_all(crd["data"]):
                if doc:
                    kubernetes_validate.validate(doc, kube_version, strict=True)


class TestCustomResourceDefinitions:
    def test_the_chart_crds_are_byte_identical_to_the_repository_crds(self) -> None:
        repo = repo_crd_files()
        if not repo:
            pytest.skip(f"{REPO_CRDS_DIR} holds no *.yaml CRDs yet; nothing to compare")
        chart_copies = chart_crd_files()
        assert sorted(chart_copies) == sorted(repo), "run python -m backtest_kit_operator.generate"
        differing = [name for name in repo if chart_copies[name] != repo[name]]
        assert differing == [], f"{differing} differ; run python -m backtest_kit_operator.generate"

    def test_the_chart_crds_define_live_trader_and_walker_in_backtestkit_dev_v1alpha1(self) -> None:
        if not repo_crd_files():
            pytest.skip(f"{REPO_CRDS_DIR} holds no CRDs yet")
        defined = set()
        for crd in chart().crds:
            for doc in yaml.safe_load_all(crd["data"]):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    spec = doc["spec"]
                    versions = {v["name"] for v in spec["versions"]}
                    defined.add((spec["group"], spec["names"]["kind"], "v1alpha1" in versions))
        assert {("backtestkit.dev", "LiveTrader", True), ("backtestkit.dev", "Walker", True)} <= defined

    def test_the_sync_script_exists_and_is_executable(self) -> None:
        script = CHART_DIR / "sync-crds.sh"
        assert script.is_file()
        assert os.access(script, os.X_OK)


class TestValuesSchema:
    def test_the_default_values_satisfy_the_schema(self) -> None:
        chart().validate_schema(chart().values)

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_every_value_preset_satisfies_the_schema(self, scenario: str) -> None:
        chart().validate_schema(chart().merge_values(SCENARIOS[scenario]))

    @pytest.mark.parametrize(
        ("typo", "offending_key"),
        [
            ({"imagee": {"tag": "1"}}, "imagee"),
            ({"image": {"pullpolicy": "Always"}}, "pullpolicy"),
            ({"watch": {"namespace": "trading"}}, "namespace"),
            ({"monitoring": {"serviceMonitor": {"enable": True}}}, "enable"),
            ({"runner": {"serviceAccount": {"automount": True}}}, "automount"),
        ],
    )
    def test_the_schema_rejects_a_misspelt_key(self, typo: dict[str, Any], offending_key: str) -> None:
        with pytest.raises(helm_python.HelmValuesError, match=offending_key):
            chart().validate_schema(chart().merge_values(typo))

    def test_rendering_with_a_misspelt_key_fails_instead_of_silently_ignoring_it(self) -> None:
        with pytest.raises(helm_python.HelmError):
            chart().render({"tolerration": []}, name="btk", namespace=NAMESPACE)

    @pytest.mark.parametrize(
        "bad",
        [
            {"image": {"pullPolicy": "Sometimes"}},
            {"logLevel": "loud"},
            {"watch": {"namespaces": ["Not_A_Namespace"]}},
            {"peering": {"createObjects": "yes"}},
            {"monitoring": {"podMonitor": {"interval": "15 seconds"}}},
        ],
    )
    def test_the_schema_rejects_a_value_of_the_wrong_form(self, bad: dict[str, Any]) -> None:
        with pytest.raises(helm_python.HelmValuesError):
            chart().validate_schema(chart().merge_values(bad))

    def test_every_key_in_values_yaml_carries_a_comment(self) -> None:
        lines = (CHART_DIR / "values.yaml").read_text(encoding="utf-8").splitlines()
        key_line = re.compile(r"^\s*[A-Za-z_][\w.-]*:(\s|$)")
        uncommented = []
        for index, line in enumerate(lines):
            if not key_line.match(line):
                continue
            has_inline = "#" in line.split(":", 1)[1]
            previous = lines[index - 1].strip() if index else ""
            if not has_inline and not previous.startswith("#"):
                uncommented.append(f"{index + 1}: {line.strip()}")
        assert uncommented == []

    def test_every_key_in_the_schema_exists_in_values_yaml_and_vice_versa(self) -> None:
        def keys(node: dict[str, Any], prefix: str = "") -> set[str]:
            out = set()
            for key, value in node.items():
                out.add(prefix + key)
                if isinstance(value, dict) and value and key not in PASSTHROUGH:
                    out |= keys(value, prefix + key + ".")
            return out

        def schema_keys(node: dict[str, Any], prefix: str = "") -> set[str]:
            out = set()
            for key, sub in node.get("properties", {}).items():
                out.add(prefix + key)
                if key not in PASSTHROUGH and "properties" in sub:
                    out |= schema_keys(sub, prefix + key + ".")
            return out

        schema = chart().schema
        assert schema is not None
        assert schema_keys(schema) - {"global"} == keys(chart().values)


# Values whose content is a Kubernetes object (free-form in the schema, checked by Kubernetes itself).
PASSTHROUGH = frozenset(
    {
        "livenessProbe",
        "readinessProbe",
        "resources",
        "podSecurityContext",
        "securityContext",
        "affinity",
        "runnerResources",
        "walkerResources",
        "namespaceSelector",
        "podSelector",
    }
)
