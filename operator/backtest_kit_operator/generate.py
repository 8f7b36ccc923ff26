"""Write the YAML copies of the contracts from their Python definitions, or check that they match.

YAML cannot import Python, so the CRD enums (Walker metrics and frame intervals, from
``backtest_kit.metrics`` and ``backtest_kit.candles``), the chart's copies of the CRDs and both RBAC
manifests (from :mod:`backtest_kit_operator.rbac`) are generated here::

    python -m backtest_kit_operator.generate          # rewrite the files
    python -m backtest_kit_operator.generate --check  # exit 1 and name every file that differs

Only the generated parts of a CRD change: the enum lists (and the metric description stating the
direction) are rewritten in place, so every other field, comment, description and CEL rule of the
hand-written schema keeps its exact text. The chart's ``crds/`` are byte copies of ``crds/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from backtest_kit.candles import FRAME_INTERVALS
from backtest_kit.metrics import METRIC_DEFINITIONS, METRIC_NAMES

from . import rbac

CRDS_DIR = Path("crds")
CHART_DIR = Path("charts") / "backtest-kit-operator"
CHART_CRDS_DIR = CHART_DIR / "crds"
CHART_RBAC = CHART_DIR / "files" / "rbac-rules.yaml"
OPERATOR_RBAC = Path("operator") / "backtest_kit_operator" / "rbac.yaml"
COMMAND = "python -m backtest_kit_operator.generate"


def metric_description() -> str:
    """The Walker ``metric`` field's description, stating each metric's direction."""
    lower = [m.name for m in METRIC_DEFINITIONS if not m.higher_is_better]
    if not lower:
        return "Ranking metric; higher is better."
    return f"Ranking metric; higher is better except {', '.join(lower)}."


@dataclass(frozen=True, slots=True)
class Site:
    """One generated value in a CRD: where (keys below ``openAPIV3Schema``) and what."""

    file: str
    path: tuple[str, ...]
    key: str
    value: Callable[[], tuple[str, ...] | str]


SITES: tuple[Site, ...] = (
    Site("walkers.backtestkit.dev.yaml", ("spec", "metric"), "enum", lambda: METRIC_NAMES),
    Site("walkers.backtestkit.dev.yaml", ("spec", "metric"), "description", metric_description),
    Site(
        "walkers.backtestkit.dev.yaml",
        ("spec", "frame", "interval"),
        "enum",
        lambda: tuple(sorted(FRAME_INTERVALS, key=FRAME_INTERVALS.__getitem__)),
    ),
)


class GenerateError(Exception):
    """A source file does not have the shape the generator rewrites."""


def _child(node: yaml.Node, key: str, where: str) -> yaml.Node:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
                return v
    raise GenerateError(f"{where}: no {key!r}")


def _schema_property(version: yaml.Node, path: Sequence[str], where: str) -> yaml.Node:
    node = _child(_child(version, "schema", where), "openAPIV3Schema", where)
    for name in path:
        node = _child(_child(node, "properties", where), name, where)
    return node


def _scalar(value: str) -> str:
    """``value`` as a one-line YAML scalar: plain when that reads back unchanged, else quoted."""
    plain_ok = value and value == value.strip() and "\n" not in value and value[0] not in "'\"!&*[]{}|>%@`#,"
    if plain_ok and yaml.safe_load(f"k: {value}") == {"k": value}:
        return value
    return json.dumps(value)


Edit = tuple[int, int, list[str]]  # replace lines [start, end) with these


def _enum_edit(lines: list[str], node: yaml.Node, values: Sequence[str], where: str) -> Edit:
    if not isinstance(node, yaml.SequenceNode) or node.flow_style or not node.value:
        raise GenerateError(f"{where}: expected a non-empty block list")
    first, last = node.value[0].start_mark.line, node.value[-1].end_mark.line
    indent = lines[first][: lines[first].index("-")]
    return first, last + 1, [f"{indent}- {_scalar(v)}\n" for v in values]


def _scalar_edit(lines: list[str], node: yaml.Node, value: str, where: str) -> Edit:
    start, end = node.start_mark, node.end_mark
    if not isinstance(node, yaml.ScalarNode) or start.line != end.line or node.style is not None:
        raise GenerateError(f"{where}: expected a one-line plain scalar")
    line = lines[start.line]
    return start.line, start.line + 1, [line[: start.column] + _scalar(value) + line[end.column :]]


def render_crd(text: str, name: str) -> str:
    """The CRD ``text`` of file ``name`` with every generated value rewritten from its definition."""
    lines = text.splitlines(keepends=True)
    root = yaml.compose(text)
    if root is None:
        raise GenerateError(f"{name}: empty")
    edits: list[Edit] = []
    versions = _child(_child(root, "spec", name), "versions", name)
    for site in (s for s in SITES if s.file == name):
        for version in versions.value:
            where = f"{name}: {'.'.join(site.path)}.{site.key}"
            node = _child(_schema_property(version, site.path, where), site.key, where)
            value = site.value()
            if isinstance(value, str):
                edits.append(_scalar_edit(lines, node, value, where))
            else:
                edits.append(_enum_edit(lines, node, value, where))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    return "".join(lines)


def _flow(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _rule_lines(rules: Sequence[rbac.Rule], indent: str) -> list[str]:
    out = []
    for rule in rules:
        out += [
            f"{indent}- apiGroups: {_flow([rule.api_group])}\n",
            f"{indent}  resources: {_flow(rule.resources)}\n",
            f"{indent}  verbs: {_flow(rule.verbs)}\n",
        ]
    return out


def _why_lines(rules: Sequence[rbac.Rule]) -> list[str]:
    out = []
    for rule in rules:
        what = ", ".join(rule.resources) + (f" ({rule.api_group})" if rule.api_group else "")
        wrapped = textwrap.wrap(f"{what}: {' '.join(rule.verbs)}. {rule.why}.", width=94)
        out += [f"#   {wrapped[0]}\n", *(f"#     {more}\n" for more in wrapped[1:])]
    return out


def _header(title: str) -> list[str]:
    return [
        f"# {title}\n",
        f"# Generated from backtest_kit_operator/rbac.py by `{COMMAND}`: edit the rules there.\n",
    ]


def render_operator_rbac() -> str:
    """The plain RBAC manifest shipped with the operator (for a deployment without Helm)."""
    lines = _header("Least-privilege RBAC of backtest-kit-operator: exactly the verbs and resources it uses.")
    lines += [
        "# Use the ClusterRole (bound with a ClusterRoleBinding) for a cluster-wide operator\n",
        "# (`--all-namespaces`), or the same rules in a Role (bound with a RoleBinding in every served\n",
        "# namespace) for `--namespace a,b`. The Helm chart grants exactly these rules.\n",
        "#\n",
        "# Why each rule exists:\n",
        *_why_lines(rbac.NAMESPACED_RULES),
        "apiVersion: rbac.authorization.k8s.io/v1\n",
        "kind: ClusterRole\n",
        "metadata:\n",
        "  name: backtest-kit-operator\n",
        "  labels:\n",
        "    app.kubernetes.io/name: backtest-kit-operator\n",
        "rules:\n",
        *_rule_lines(rbac.NAMESPACED_RULES, "  "),
        "---\n",
        "# Only with `--peering NAME` (several replicas, one active): kopf's peering objects, KopfPeering\n",
        "# in each served namespace or ClusterKopfPeering cluster-wide. Requires kopf's CRDs (kopf.dev).\n",
        *_why_lines((*rbac.PEERING_RULES, *rbac.CLUSTER_PEERING_RULES)),
        "apiVersion: rbac.authorization.k8s.io/v1\n",
        "kind: ClusterRole\n",
        "metadata:\n",
        "  name: backtest-kit-operator-peering\n",
        "  labels:\n",
        "    app.kubernetes.io/name: backtest-kit-operator\n",
        "rules:\n",
        *_rule_lines((*rbac.PEERING_RULES, *rbac.CLUSTER_PEERING_RULES), "  "),
    ]
    return "".join(lines)


def render_chart_rbac() -> str:
    """The rule sets ``templates/rbac.yaml`` reads (``.Files.Get``) to build Roles and ClusterRoles."""
    lines = _header("The operator's RBAC rules, read by templates/rbac.yaml.")
    lines += [
        "# namespaced: every served namespace (a Role there, or the ClusterRole cluster-wide).\n",
        "# peering / clusterPeering: added with peering enabled, namespaced / cluster-wide.\n",
        "namespaced:\n",
        *_rule_lines(rbac.NAMESPACED_RULES, ""),
        "peering:\n",
        *_rule_lines(rbac.PEERING_RULES, ""),
        "clusterPeering:\n",
        *_rule_lines(rbac.CLUSTER_PEERING_RULES, ""),
    ]
    return "".join(lines)


def expected_files(root: Path) -> dict[Path, str]:
    """Every generated file (relative to ``root``) and the text it must hold."""
    files: dict[Path, str] = {}
    for source in sorted((root / CRDS_DIR).glob("*.yaml")):
        text = render_crd(source.read_text(encoding="utf-8"), source.name)
        files[CRDS_DIR / source.name] = text
        files[CHART_CRDS_DIR / source.name] = text
    files[OPERATOR_RBAC] = render_operator_rbac()
    files[CHART_RBAC] = render_chart_rbac()
    return files


def stale_files(root: Path) -> list[Path]:
    """Chart CRD copies whose source in ``crds/`` is gone."""
    sources = {p.name for p in (root / CRDS_DIR).glob("*.yaml")}
    return [
        CHART_CRDS_DIR / p.name
        for p in sorted((root / CHART_CRDS_DIR).glob("*.yaml"))
        if p.name not in sources
    ]


def differing(root: Path) -> list[Path]:
    """Generated files (relative to ``root``) whose content is not what the generator writes."""
    out = list(stale_files(root))
    for rel, text in expected_files(root).items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def write(root: Path) -> list[Path]:
    """Write every generated file and remove stale copies; returns what changed."""
    changed = differing(root)
    for rel in stale_files(root):
        (root / rel).unlink()
    for rel, text in expected_files(root).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return changed


def default_root() -> Path:
    """The repository this module sits in (a source checkout), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / CRDS_DIR).is_dir() and (here / CHART_DIR).is_dir() else Path.cwd()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root or default_root()
    try:
        if args.check:
            stale = differing(root)
            for rel in stale:
                print(f"out of date: {rel} (run `{COMMAND}`)", file=sys.stderr)
            return 1 if stale else 0
        for rel in write(root):
            print(f"wrote {rel}")
    except (GenerateError, OSError, yaml.YAMLError) as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
