"""The Python SDK: write a flow as decorated functions instead of YAML.

See docs/sdk.md. `Flow` builds the spec, `python -m weir.sdk.entry` runs one task of it.
"""

from weir.sdk.checks import FlowDefinitionError
from weir.sdk.flow import Flow, Secret, Task
from weir.sdk.params import ParamsError
from weir.sdk.serializers import SerializationError, Serializer

__all__ = [
    "Flow",
    "FlowDefinitionError",
    "ParamsError",
    "Secret",
    "SerializationError",
    "Serializer",
    "Task",
]
