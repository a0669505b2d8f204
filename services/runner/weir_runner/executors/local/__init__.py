"""The local executor: runs each attempt as a local process (no shell) in its own directory.

The embedded default, for laptops, CI and single-machine installs. Each attempt gets
`<runner_dir>/<attempt_id>/work` as its working directory, its stdout and stderr in files
beside it, its exit code in `exit` the moment it ends (written by a tiny shell supervisor, so
even a runner killed with -9 at that very moment loses nothing), and `result.json` once the
runner has finished with it. A redelivered attempt reports its result, takes the recorded exit
code, or adopts the still-running process — it never runs a finished task again. Runners of
one machine share WEIR_RUNNER_DIR for this.

Inputs are downloaded from the artifact store (the NATS Object Store, or S3 when
`WEIR_ARTIFACTS_URL` says so) into the working directory before the command starts (from
the flow that produced them: `dispatch.input_flows` names an earlier flow whose outputs a
rerun reuses); outputs are uploaded after exit 0. `fromSecret` values come from weir's
encrypted secret store (`weir secret set`), else from the runner's `WEIR_SECRET_<NAME>`
variable, and go only into the process environment.

Each attempt runs under a supervisor (`weir_runner.supervisor`, started with a fixed
environment, never the task's) that keeps its logs within `WEIR_TASK_LOG_MAX`, records its exit
code and kills everything the task started when it ends; the task runs as an unprivileged user
when the runner is root, in a cgroup or under rlimits (`weir_runner.containment`).

By concern: `executor` ties the attempt's life together (run, resume, adopt, the result),
`process` starts, stops and reads the supervised process, `environment` builds the task's
environment and redacts its secrets, `files` places its inputs and keeps its outputs.
"""

from weir_runner.executors.local.executor import LocalExecutor
from weir_runner.executors.local.process import SUPERVISOR_ENV, supervisor_argv

__all__ = ["SUPERVISOR_ENV", "LocalExecutor", "supervisor_argv"]
