"""The task process: `python -m weir.sdk.entry <file or module> <task> [--flow NAME]`.

This is the `cmd` of every SDK task. It imports the flow's file (so `flow.main()` there is a
no-op), checks that the runner asked for this task (`WEIR_TASK`), reads the inputs the
runner placed in the working directory, calls the function and writes the output file.
A failure exits 1 with the traceback on stderr, whose end the runner reports.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from weir.sdk import flow as flow_module

EXIT_FAILED = 1
EXIT_USAGE = 2


def module_name_for(path: Path) -> tuple[str, Path]:
    """The dotted name `path` imports as, and the directory to put on `sys.path`: packages
    (directories with `__init__.py`) are walked up, as pytest does, so classes defined in
    the file pickle under the same name in every process that loads it this way."""
    parts = [path.stem]
    root = path.parent
    while (root / "__init__.py").exists():
        parts.insert(0, root.name)
        root = root.parent
    return ".".join(parts), root


def load_entrypoint(entrypoint: str) -> ModuleType:
    """Import the flow's file (a path ending in .py or containing '/') or module."""
    if not (entrypoint.endswith(".py") or "/" in entrypoint):
        return importlib.import_module(entrypoint)
    path = Path(entrypoint).resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"flow file {entrypoint} does not exist on this machine; the task's cmd names it, "
            'so set Flow(..., entrypoint="...") to where the file is for the task process'
        )
    name, root = module_name_for(path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == path:
            return loaded
        raise ImportError(
            f"{path} would import as module {name!r}, which is already {loaded!r}; rename the file"
        )
    if "." in name:
        importlib.import_module(name.rpartition(".")[0])
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _is_instance_of(asked: str, task: str) -> bool:
    """An instance `NAME[i]` of mapped task `NAME` runs `NAME`'s command."""
    index = asked.removeprefix(f"{task}[").removesuffix("]")
    return asked == f"{task}[{index}]" and index.isdigit()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weir.sdk.entry", description="Run one task of a weir SDK flow."
    )
    parser.add_argument("entrypoint", help="the flow's file, or its module name")
    parser.add_argument("task", help="the task to run")
    parser.add_argument("--flow", help="the flow's name, when the file defines several")
    args = parser.parse_args(argv)
    asked = os.environ.get("WEIR_TASK")
    if asked and asked != args.task and not _is_instance_of(asked, args.task):
        print(
            f'weir: the runner asked for task "{asked}" but cmd names "{args.task}"; '
            "rebuild the flow spec instead of editing its cmd",
            file=sys.stderr,
        )
        return EXIT_USAGE
    flow_module.enter_task_process()
    try:
        load_entrypoint(args.entrypoint)
        flow = flow_module.registered_flow(args.flow)
        flow.run_task(args.task, Path(os.environ.get("WEIR_WORKDIR") or "."))
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
