"""What a task's `kubernetes` section may ask of its pod: the operator's allow-lists and
security floor, checked before any pod exists. Pure: the spec in, every refusal out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from weir.config import Settings
from weir_proto.spec import KubernetesOptions, TaskSpec

from weir_runner.executors.kubernetes.manifest import secret_key_ref


@dataclass(frozen=True, slots=True)
class PodPolicy:
    """The runner's limits on pods (settings `kube_allowed_*`, `kube_run_as_non_root`)."""

    run_as_non_root: bool = False
    """A floor: a task may not ask for `runAsNonRoot: false` nor `runAsUser: 0`."""
    secrets: frozenset[str] = frozenset()
    """Kubernetes Secrets a `fromSecret` may read directly (weir's own store: always)."""
    service_accounts: frozenset[str] = frozenset()
    annotations: frozenset[str] = frozenset()
    node_selectors: frozenset[str] = frozenset()
    """Node label keys a `nodeSelector` may use."""
    tolerations: frozenset[str] = frozenset()
    """Taint keys a toleration may name."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PodPolicy:
        return cls(
            run_as_non_root=settings.kube_run_as_non_root,
            secrets=frozenset(settings.kube_allowed_secrets),
            service_accounts=frozenset(settings.kube_allowed_service_accounts),
            annotations=frozenset(settings.kube_allowed_annotations),
            node_selectors=frozenset(settings.kube_allowed_node_selectors),
            tolerations=frozenset(settings.kube_allowed_tolerations),
        )

    def secret_refusal(self, task: str, variable: str, source: str) -> str | None:
        """Why `fromSecret: source` may not read Kubernetes Secret `name` directly, if so."""
        name = secret_key_ref(source)["name"]
        if name in self.secrets:
            return None
        return _refusal(
            task, f"env {variable}: fromSecret", source, "WEIR_KUBE_ALLOWED_SECRETS", self.secrets
        )

    def refusals(self, task: TaskSpec) -> list[str]:
        """Every way `task` asks for more than this policy allows (empty: none)."""
        options = task.kubernetes or KubernetesOptions()
        name = task.name
        found: list[str] = []
        for var in task.env:  # a store name is resolved later; `name/key` is Kubernetes'
            if var.from_secret is not None and "/" in var.from_secret:
                refusal = self.secret_refusal(name, var.name, var.from_secret)
                if refusal is not None:
                    found.append(refusal)
        account = options.service_account_name
        if account is not None and account not in self.service_accounts:
            found.append(
                _refusal(
                    name,
                    "kubernetes.serviceAccountName",
                    account,
                    "WEIR_KUBE_ALLOWED_SERVICE_ACCOUNTS",
                    self.service_accounts,
                )
            )
        if options.automount_service_account_token and account is None:
            found.append(
                f'task "{name}": kubernetes.automountServiceAccountToken needs a '
                "serviceAccountName allowed by WEIR_KUBE_ALLOWED_SERVICE_ACCOUNTS "
                f"({_listed(self.service_accounts)}); the namespace's default account is not"
            )
        if self.run_as_non_root and options.run_as_non_root is False:
            found.append(
                f'task "{name}": kubernetes.runAsNonRoot: false is not allowed: this runner '
                "runs pods as non-root (WEIR_KUBE_RUN_AS_NON_ROOT)"
            )
        if self.run_as_non_root and options.run_as_user == 0:
            found.append(
                f'task "{name}": kubernetes.runAsUser: 0 (root) is not allowed: this runner '
                "runs pods as non-root (WEIR_KUBE_RUN_AS_NON_ROOT)"
            )
        found += _refusals(
            name,
            "kubernetes.annotations",
            options.annotations,
            "WEIR_KUBE_ALLOWED_ANNOTATIONS",
            self.annotations,
        )
        found += _refusals(
            name,
            "kubernetes.nodeSelector",
            options.node_selector,
            "WEIR_KUBE_ALLOWED_NODE_SELECTORS",
            self.node_selectors,
        )
        for toleration in options.tolerations:
            key = toleration.key or ""
            if key not in self.tolerations:
                found.append(
                    _refusal(
                        name,
                        "kubernetes.tolerations",
                        key or "(every taint)",
                        "WEIR_KUBE_ALLOWED_TOLERATIONS",
                        self.tolerations,
                    )
                )
        return found


def _listed(allowed: frozenset[str]) -> str:
    return ", ".join(sorted(allowed)) if allowed else "none allowed"


def _refusal(task: str, field: str, value: str, setting: str, allowed: frozenset[str]) -> str:
    return (
        f'task "{task}": {field} "{value}" is not allowed by this runner '
        f"({setting}: {_listed(allowed)})"
    )


def _refusals(
    task: str, field: str, keys: Iterable[str], setting: str, allowed: frozenset[str]
) -> list[str]:
    """A refusal for each of `keys` not in `allowed`, in their order."""
    return [_refusal(task, field, key, setting, allowed) for key in keys if key not in allowed]
