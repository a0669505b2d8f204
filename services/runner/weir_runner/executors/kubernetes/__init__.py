"""The Kubernetes executor: one pod per attempt, followed by one shared watch.

`manifest` builds the pod, `verdict` reads a pod's status into a decision, `watcher` keeps
the one watch per runner, `api` is the thin layer over the API server, and `executor` ties
them into the `Executor` interface.
"""

from weir_runner.executors.kubernetes.executor import KubernetesConfig, KubernetesExecutor

__all__ = ["KubernetesConfig", "KubernetesExecutor"]
