"""The Kubernetes executor: one pod per attempt, followed by one shared watch.

`manifest` builds the pod, `policy` refuses what a runner does not allow, `verdict` reads a
pod's status into a decision, `watcher` keeps the one watch per runner, `pod_logs` follows a
pod's log into its attempt's directory, `secret_refs` and `secret_sync` put weir's stored
secrets into Kubernetes Secrets, `api` is the thin layer over the API server, and `executor`
ties them into the `Executor` interface.
"""

from weir_runner.executors.kubernetes.executor import KubernetesConfig, KubernetesExecutor

__all__ = ["KubernetesConfig", "KubernetesExecutor"]
