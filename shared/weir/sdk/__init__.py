"""The Python SDK: write a flow as decorated functions instead of YAML.

See docs/sdk.md. `Flow` builds the spec, `python -m weir.sdk.entry` runs one task of it.
"""

from weir.sdk.checks import FlowDefinitionError
from weir.sdk.flow import Flow
from weir.sdk.local import LocalRun, LocalTask
from weir.sdk.params import ParamsError
from weir.sdk.serializers import SerializationError, Serializer
from weir.sdk.task import Secret, Task

__all__ = [
    "Flow",
    "FlowDefinitionError",
    "LocalRun",
    "LocalTask",
    "ParamsError",
    "Secret",
    "SerializationError",
    "Serializer",
    "Task",
]
