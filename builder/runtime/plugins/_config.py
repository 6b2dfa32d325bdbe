"""What the kubeadm and k0s plugins share to merge configs: the Clusterfile's documents over
the image's defaults, then the fields the runtime relies on set in place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from builder.errors import ClusterError
from builder.runtime.plugins.base import AUDIT_POLICY


def deep_merge(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """`upper` over `lower`: mappings merge key by key; lists and scalars of `upper` replace."""
    out = dict(lower)
    for key, value in upper.items():
        old = out.get(key)
        out[key] = (
            deep_merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
        )
    return out


def child_mapping(parent: dict[str, Any], key: str, where: str, error: type[ClusterError]) -> dict[str, Any]:
    """parent[key] as a fresh dict (created when absent), so the caller can set fields in it;
    `error` names `where` when it is not a mapping."""
    value = parent.get(key)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise error(f"{where}.{key} must be a mapping, not {type(value).__name__}")
    result: dict[str, Any] = dict(value)
    parent[key] = result
    return result


# sealer's basefs kubeadm.yml values: a week of logs, 10 files of at most 100 MB each.
AUDIT_LOG_ROTATION = (("audit-log-maxage", "7"), ("audit-log-maxbackup", "10"), ("audit-log-maxsize", "100"))


def has_audit_policy(image_files: Mapping[str, str]) -> bool:
    """The image ships statics/audit-policy.yml (or its .tmpl; the planner records either under
    the rendered name)."""
    return AUDIT_POLICY in image_files


def audit_args(policy_file: str, log_path: str) -> list[tuple[str, str]]:
    """The kube-apiserver audit flags (name, value), in the order every runtime writes them."""
    return [("audit-policy-file", policy_file), ("audit-log-path", log_path), *AUDIT_LOG_ROTATION]
