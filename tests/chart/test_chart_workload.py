"""The operator Deployment (one writer, scope, probes, hardening) and its least-privilege RBAC."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
import yaml

from backtest_kit_operator import rbac

from .chart_support import (
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    chart,
    objects,
    of_kind,
    one,
    operator_container,
    scenario_objects,
)

FULLNAME = f"{RELEASE}-backtest-kit-operator"
RUNNER_SA = f"{FULLNAME}-runner"
# What the operator serves for each value preset ([] = the whole cluster).
SERVED_NAMESPACES = {
    "defaults": [],
    "standalone": [],
    "all-features": ["trading-a", "trading-b"],
    "own-namespace": [NAMESPACE],
    "cluster-peering": [],
}


def _pod_spec(objs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


class TestSingleWriter:
    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_exactly_one_replica_runs_and_upgrades_recreate_instead_of_overlapping(
        self, scenario: str
    ) -> None:
        spec = one(scenario_objects(scenario), "Deployment")["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}

    def test_without_peering_the_operator_runs_standalone_because_no_peering_flag_is_passed(self) -> None:
        args = operator_container(scenario_objects("standalone"))["args"]
        assert not [a for a in args if a.startswith("--peering")]
        assert f"--peering={FULLNAME}" in operator_container(scenario_objects("defaults"))["args"]

    def test_with_peering_the_operator_joins_the_named_peering(self) -> None:
        args = operator_container(scenario_objects("all-features"))["args"]
        assert "--peering=btk-peering" in args
        default_name = operator_container(scenario_objects("cluster-peering"))["args"]
        assert f"--peering={FULLNAME}" in default_name

    def test_peering_uses_one_cluster_peering_for_all_namespaces_and_a_namespaced_one_per_watched_namespace(
        self,
    ) -> None:
        cluster = scenario_objects("cluster-peering")
        assert [o["metadata"]["name"] for o in of_kind(cluster, "ClusterKopfPeering")] == [FULLNAME]
        assert not of_kind(cluster, "KopfPeering")
        listed = scenario_objects("all-features")
        assert sorted(o["metadata"]["namespace"] for o in of_kind(listed, "KopfPeering")) == [
            "trading-a",
            "trading-b",
        ]
        assert not of_kind(listed, "ClusterKopfPeering")


class TestOperatorCommand:
    def test_the_container_runs_the_operator_module(self) -> None:
        assert operator_container(scenario_objects("defaults"))["command"] == [
            "python",
            "-m",
            "backtest_kit_operator",
        ]

    def test_an_empty_namespace_list_watches_all_namespaces(self) -> None:
        args = operator_container(scenario_objects("defaults"))["args"]
        assert "--all-namespaces" in args
        assert not [a for a in args if a.startswith("--namespace")]

    def test_a_namespace_list_watches_exactly_those_namespaces(self) -> None:
        args = operator_container(scenario_objects("all-features"))["args"]
        assert [a for a in args if a.startswith("--namespace")] == [
            "--namespace=trading-a",
            "--namespace=trading-b",
        ]
        assert "--all-namespaces" not in args

    def test_own_namespace_scope_watches_only_the_release_namespace(self) -> None:
        args = operator_container(scenario_objects("own-namespace"))["args"]
        assert [a for a in args if a.startswith("--namespace")] == [f"--namespace={NAMESPACE}"]

    def test_the_kopf_liveness_endpoint_is_on_port_8080_and_metrics_on_port_9090(self) -> None:
        args = operator_container(scenario_objects("defaults"))["args"]
        assert "--liveness=http://0.0.0.0:8080/healthz" in args
        assert "--metrics-port=9090" in args

    def test_extra_args_come_last_and_log_level_maps_to_a_flag(self) -> None:
        args = operator_container(scenario_objects("all-features"))["args"]
        assert args[-1] == "--poll-interval=2"
        assert args[0] == "--debug"

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_the_rendered_arguments_are_accepted_by_the_operators_own_command_line_parser(
        self, scenario: str
    ) -> None:
        cli = pytest.importorskip(
            "backtest_kit_operator.__main__", reason="the operator package is not importable"
        )
        args = operator_container(scenario_objects(scenario))["args"]
        try:
            parsed = cli.build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"python -m backtest_kit_operator rejects {args}")
        assert cli.namespaces_from(parsed, {}) == SERVED_NAMESPACES[scenario]

    def test_the_operator_learns_the_runner_image_and_runner_service_account_from_its_environment(
        self,
    ) -> None:
        from backtest_kit_operator.settings import load_settings

        env = _env(operator_container(scenario_objects("defaults")))
        settings = load_settings({k: v for k, v in env.items() if isinstance(v, str)})
        assert settings.runner_image == "ghcr.io/backtest-kit/backtest-kit-runner:0.1.0"
        assert settings.runner_service_account == RUNNER_SA

    def test_the_runner_image_and_extra_env_come_from_values(self) -> None:
        env = _env(operator_container(scenario_objects("all-features")))
        assert env["BACKTEST_KIT_OPERATOR_RUNNER_IMAGE"] == "registry.example.com/btk/runner:1.2.3"
        assert env["BACKTEST_KIT_OPERATOR_RUNNER_IMAGE_PULL_POLICY"] == "Always"
        assert env["BACKTEST_KIT_OPERATOR_HTTP_TIMEOUT"] == "2"

    def test_the_operator_image_defaults_to_the_app_version_and_follows_values(self) -> None:
        assert operator_container(scenario_objects("defaults"))["image"].endswith(
            "backtest-kit-operator:0.1.0"
        )
        container = operator_container(scenario_objects("all-features"))
        assert container["image"] == "registry.example.com/btk/operator:1.2.3"
        assert container["imagePullPolicy"] == "Always"


class TestProbesResourcesAndPorts:
    def test_liveness_and_readiness_probe_kopfs_healthz_on_the_health_port(self) -> None:
        container = operator_container(scenario_objects("defaults"))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"health": 8080, "metrics": 9090}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}

    def test_the_operator_has_resource_requests_and_a_memory_limit(self) -> None:
        resources = operator_container(scenario_objects("defaults"))["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]

    def test_the_metrics_service_exposes_port_9090_named_metrics_and_selects_the_operator_pod(self) -> None:
        objs = scenario_objects("defaults")
        service = one(objs, "Service")
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
        ]
        pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()


class TestSchedulingValues:
    def test_pull_secrets_tolerations_node_selector_affinity_and_priority_class_reach_the_pod(self) -> None:
        values = SCENARIOS["all-features"]
        spec = _pod_spec(scenario_objects("all-features"))
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["tolerations"] == values["tolerations"]
        assert spec["nodeSelector"] == values["nodeSelector"]
        assert spec["affinity"] == values["affinity"]
        assert spec["priorityClassName"] == "trading-critical"
        assert spec["terminationGracePeriodSeconds"] == 60

    def test_pod_annotations_and_labels_reach_the_pod_template_without_touching_the_selector(self) -> None:
        deployment = one(scenario_objects("all-features"), "Deployment")
        template = deployment["spec"]["template"]["metadata"]
        assert template["annotations"] == {"example.com/team": "quant"}
        assert template["labels"]["team"] == "quant"
        assert "team" not in deployment["spec"]["selector"]["matchLabels"]

    def test_unset_optional_pod_fields_are_not_rendered(self) -> None:
        spec = _pod_spec(scenario_objects("defaults"))
        for field in ("imagePullSecrets", "tolerations", "nodeSelector", "affinity", "priorityClassName"):
            assert field not in spec


class TestSecurityContext:
    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_the_operator_pod_runs_as_non_root_with_the_runtime_default_seccomp_profile(
        self, scenario: str
    ) -> None:
        pod = _pod_spec(scenario_objects(scenario))["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_the_operator_container_is_read_only_unprivileged_and_drops_every_capability(
        self, scenario: str
    ) -> None:
        ctx = operator_container(scenario_objects(scenario))["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx.get("privileged", False) is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert not ctx["capabilities"].get("add")
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}

    def test_tmp_is_a_size_limited_empty_dir_because_the_root_filesystem_is_read_only(self) -> None:
        objs = scenario_objects("all-features")
        volumes = {v["name"]: v for v in _pod_spec(objs)["volumes"]}
        assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "32Mi"}
        mounts = operator_container(objs)["volumeMounts"]
        assert {"name": "tmp", "mountPath": "/tmp"} in mounts


def _rules(objs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    """(role kind/namespace/name, rule) for every rule of every Role and ClusterRole."""
    out: list[tuple[str, dict[str, Any]]] = []
    for role in [*of_kind(objs, "ClusterRole"), *of_kind(objs, "Role")]:
        where = f"{role['kind']} {role['metadata'].get('namespace', '')}/{role['metadata']['name']}"
        out.extend((where, rule) for rule in role["rules"])
    return out


def _grants(objs: tuple[dict[str, Any], ...], kind: str) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over every role of ``kind``."""
    grants: dict[tuple[str, str], set[str]] = {}
    for role in of_kind(objs, kind):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


# The operator's rules (backtest_kit_operator.rbac, checked against its calls in tests/operator).
NAMESPACED_RULES = rbac.policy_rules(rbac.NAMESPACED_RULES)
PEERING_RULES = rbac.policy_rules(rbac.PEERING_RULES)
CLUSTER_PEERING_RULES = rbac.policy_rules(rbac.CLUSTER_PEERING_RULES)
PEERING_VERBS = {"get", "list", "watch", "patch"}


def _rule_grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    return _grants(({"kind": "ClusterRole", "rules": rules},), "ClusterRole")


# The most the operator may ever be granted; anything else is a least-privilege violation.
ALLOWED = _rule_grants([*NAMESPACED_RULES, *PEERING_RULES, *CLUSTER_PEERING_RULES])
NAMESPACED_NEEDS = _rule_grants(NAMESPACED_RULES)


class TestRbac:
    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_no_rule_uses_a_wildcard_or_non_resource_urls(self, scenario: str) -> None:
        for where, rule in _rules(scenario_objects(scenario)):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{where}: {field} wildcard"
                assert not [v for v in rule[field] if "*" in v], f"{where}: {field} wildcard"
            assert "nonResourceURLs" not in rule, where
            assert "resourceNames" not in rule, where

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_every_grant_is_within_what_the_operator_needs(self, scenario: str) -> None:
        for where, rule in _rules(scenario_objects(scenario)):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    allowed = ALLOWED.get((group, resource))
                    assert allowed is not None, f"{where} grants {group}/{resource}"
                    assert set(rule["verbs"]) <= allowed, (
                        f"{where} grants {rule['verbs']} on {group}/{resource}"
                    )

    def test_the_all_namespaces_scope_grants_what_the_operator_needs_cluster_wide(self) -> None:
        (role,) = of_kind(scenario_objects("standalone"), "ClusterRole")
        assert role["metadata"]["name"] == FULLNAME
        assert role["rules"] == NAMESPACED_RULES
        assert not of_kind(scenario_objects("defaults"), "Role")

    def test_the_rendered_rules_are_exactly_the_operators_rules_in_every_scope(self) -> None:
        (cluster_peering,) = of_kind(scenario_objects("cluster-peering"), "ClusterRole")
        assert cluster_peering["rules"] == NAMESPACED_RULES + CLUSTER_PEERING_RULES
        for scenario in ("all-features", "own-namespace"):
            roles = of_kind(scenario_objects(scenario), "Role")
            assert roles and all(r["rules"] == NAMESPACED_RULES + PEERING_RULES for r in roles), scenario
        roles = of_kind(objects({"watch": {"namespaces": ["a"]}, "peering": {"enabled": False}}), "Role")
        assert [r["rules"] for r in roles] == [NAMESPACED_RULES]

    def test_the_chart_and_the_operators_plain_manifest_grant_the_same_rules(self) -> None:
        text = resources.files("backtest_kit_operator").joinpath("rbac.yaml").read_text()
        operator_role, peering_role = [doc for doc in yaml.safe_load_all(text) if doc]
        (chart_role,) = of_kind(scenario_objects("standalone"), "ClusterRole")
        assert chart_role["rules"] == operator_role["rules"]
        assert peering_role["rules"] == PEERING_RULES + CLUSTER_PEERING_RULES

    def test_a_namespace_list_scope_grants_namespaced_rights_only_through_roles_in_those_namespaces(
        self,
    ) -> None:
        objs = scenario_objects("all-features")
        roles = of_kind(objs, "Role")
        assert sorted(r["metadata"]["namespace"] for r in roles) == ["trading-a", "trading-b"]
        for role in roles:
            grants = _grants((role,), "Role")
            for key, verbs in NAMESPACED_NEEDS.items():
                assert grants.get(key, set()) >= verbs, (role["metadata"]["namespace"], key)
        assert not of_kind(objs, "ClusterRole")
        assert not of_kind(objs, "ClusterRoleBinding")

    def test_each_role_is_bound_to_the_operator_service_account_in_its_own_namespace(self) -> None:
        objs = scenario_objects("all-features")
        bindings = of_kind(objs, "RoleBinding")
        assert sorted(b["metadata"]["namespace"] for b in bindings) == ["trading-a", "trading-b"]
        for binding in bindings:
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": FULLNAME,
            }
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
            ]

    def test_own_namespace_scope_grants_namespaced_rights_only_in_the_release_namespace(self) -> None:
        roles = of_kind(scenario_objects("own-namespace"), "Role")
        assert [r["metadata"]["namespace"] for r in roles] == [NAMESPACE]

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_no_scope_grants_pod_logs_crds_or_namespaces_because_the_operator_never_reads_them(
        self, scenario: str
    ) -> None:
        for where, rule in _rules(scenario_objects(scenario)):
            assert not {"pods/log", "customresourcedefinitions", "namespaces"} & set(rule["resources"]), where

    def test_kopf_peering_rights_exist_only_when_peering_is_enabled(self) -> None:
        off = _grants(scenario_objects("standalone"), "ClusterRole")
        assert not [key for key in off if key[0] == "kopf.dev"]
        cluster = _grants(scenario_objects("cluster-peering"), "ClusterRole")
        assert cluster[("kopf.dev", "clusterkopfpeerings")] == PEERING_VERBS
        assert ("kopf.dev", "kopfpeerings") not in cluster
        namespaced = _grants(scenario_objects("all-features"), "Role")
        assert namespaced[("kopf.dev", "kopfpeerings")] == PEERING_VERBS

    def test_without_rbac_creation_no_role_or_binding_is_rendered(self) -> None:
        kinds = {o["kind"] for o in objects({"rbac": {"create": False}})}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


class TestServiceAccounts:
    def test_the_operator_service_account_mounts_its_token_because_it_talks_to_the_api(self) -> None:
        accounts = {
            sa["metadata"]["name"]: sa for sa in of_kind(scenario_objects("defaults"), "ServiceAccount")
        }
        assert accounts[FULLNAME]["automountServiceAccountToken"] is True
        assert _pod_spec(scenario_objects("defaults"))["serviceAccountName"] == FULLNAME

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_the_runner_service_account_never_mounts_a_token(self, scenario: str) -> None:
        runners = [
            sa
            for sa in of_kind(scenario_objects(scenario), "ServiceAccount")
            if sa["metadata"]["name"] == RUNNER_SA
        ]
        assert runners
        for sa in runners:
            assert sa["automountServiceAccountToken"] is False

    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    def test_the_runner_service_account_is_bound_to_no_role(self, scenario: str) -> None:
        for binding in [
            *of_kind(scenario_objects(scenario), "RoleBinding"),
            *of_kind(scenario_objects(scenario), "ClusterRoleBinding"),
        ]:
            names = {s["name"] for s in binding["subjects"]}
            assert names == {FULLNAME}, binding["metadata"]["name"]

    def test_the_runner_service_account_exists_in_every_namespace_runner_pods_are_created_in(self) -> None:
        def namespaces(scenario: str) -> list[str]:
            objs = scenario_objects(scenario)
            return sorted(
                sa["metadata"]["namespace"]
                for sa in of_kind(objs, "ServiceAccount")
                if sa["metadata"]["name"] == RUNNER_SA
            )

        assert namespaces("defaults") == [NAMESPACE]
        assert namespaces("own-namespace") == [NAMESPACE]
        assert namespaces("all-features") == ["sandbox", "trading-a", "trading-b"]

    def test_runner_pull_secrets_ride_on_the_runner_service_account(self) -> None:
        for sa in of_kind(scenario_objects("all-features"), "ServiceAccount"):
            if sa["metadata"]["name"] == RUNNER_SA:
                assert sa["imagePullSecrets"] == [{"name": "regcred"}]

    def test_an_existing_operator_service_account_can_be_used_instead(self) -> None:
        objs = objects({"serviceAccount": {"create": False, "name": "ops-sa"}})
        assert [sa["metadata"]["name"] for sa in of_kind(objs, "ServiceAccount")] == [RUNNER_SA]
        assert _pod_spec(objs)["serviceAccountName"] == "ops-sa"
        for binding in of_kind(objs, "ClusterRoleBinding"):
            assert binding["subjects"][0]["name"] == "ops-sa"


class TestLeastPrivilegeForWhatTheOperatorStarts:
    def test_the_operator_gets_the_image_allowlist_default_resources_and_walker_bounds(self) -> None:
        env = _env(operator_container(scenario_objects("defaults")))
        runner_image = f"ghcr.io/backtest-kit/backtest-kit-runner:{chart().metadata['appVersion']}"
        assert env["BACKTEST_KIT_OPERATOR_ALLOWED_IMAGES"] == runner_image
        assert json.loads(env["BACKTEST_KIT_OPERATOR_RUNNER_RESOURCES"])["limits"]["memory"] == "512Mi"
        assert json.loads(env["BACKTEST_KIT_OPERATOR_WALKER_RESOURCES"])["requests"]["cpu"] == "100m"
        assert env["BACKTEST_KIT_OPERATOR_WALKER_ACTIVE_DEADLINE"] == "21600"
        assert env["BACKTEST_KIT_OPERATOR_WALKER_TTL_AFTER_FINISHED"] == "604800"
        allowed = objects({"operatorSettings": {"allowedImages": ["registry.example.com/btk/*", "x:1"]}})
        assert _env(operator_container(allowed))["BACKTEST_KIT_OPERATOR_ALLOWED_IMAGES"] == (
            "registry.example.com/btk/*,x:1"
        )

    def test_the_rendered_settings_are_accepted_by_the_operators_settings_model(self) -> None:
        from backtest_kit_operator.settings import load_settings

        env = _env(operator_container(scenario_objects("defaults")))
        settings = load_settings(
            {k: str(v) for k, v in env.items() if k.startswith("BACKTEST_KIT_OPERATOR_")}
        )
        assert settings.image_allowed(env["BACKTEST_KIT_OPERATOR_RUNNER_IMAGE"])
        assert not settings.image_allowed("evil.example/miner:1")

    def test_runner_pods_admit_only_the_operator_and_prometheus(self) -> None:
        (policy,) = of_kind(scenario_objects("defaults"), "NetworkPolicy")
        assert policy["metadata"]["namespace"] == NAMESPACE
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "backtest-kit-runner"
        assert spec["policyTypes"] == ["Ingress"]
        operator_rule, prometheus_rule = spec["ingress"]
        (source,) = operator_rule["from"]
        assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
        assert source["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "backtest-kit-operator"
        assert operator_rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
        assert prometheus_rule["from"][0]["podSelector"] == {
            "matchLabels": {"app.kubernetes.io/name": "prometheus"}
        }
        listed = of_kind(scenario_objects("all-features"), "NetworkPolicy")
        assert sorted(p["metadata"]["namespace"] for p in listed) == ["sandbox", "trading-a", "trading-b"]
        assert not of_kind(scenario_objects("standalone"), "NetworkPolicy")
