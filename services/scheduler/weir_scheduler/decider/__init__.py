"""The functional core: `decide(flow, command, now) -> events` and `evolve(flow, event) -> flow`.

Both are pure and total; nothing here awaits. By concern:

- `commands.py`: what `decide` answers, and the deployment's `Policy`;
- `core.py`: `decide`, from a command to the events it causes;
- `dispatch.py`: handing out ready work (max_parallel, limited queues, dispatch window);
- `fanout.py`: mapped tasks, expanded into one instance per item of a list;
- `failures.py`: what a failure or a cancel does to the work not handed out yet;
- `triggers.py`: trigger rules and `when` conditions;
- `stepping.py`: pause, resume, retry of one task and update, and their refusals;
- `gates.py`: `when` conditions over upstream outputs, read by the shell first;
- `state.py`: the flow's state folded from the log, and what is read off it;
- `evolve.py`: `evolve`, the state after each event;
- `transitions.py`: the bookkeeping of a task's change of status (counters, the ready line).
"""

from weir_scheduler.decider import commands
from weir_scheduler.decider.commands import *  # noqa: F403 (every command, and the Policy)
from weir_scheduler.decider.core import decide, decide_and_evolve
from weir_scheduler.decider.evolve import evolve, fold
from weir_scheduler.decider.state import (
    FoldedFlow,
    FoldedTask,
    dispatch_spec,
    flow_outcome,
    with_token_digest,
)

__all__ = [
    *commands.__all__,
    "FoldedFlow",
    "FoldedTask",
    "decide",
    "decide_and_evolve",
    "dispatch_spec",
    "evolve",
    "flow_outcome",
    "fold",
    "with_token_digest",
]
