"""The scheduler's data layer: the only code that holds the database pool or runs SQL.

- `layer.py`: `DataLayer`, the typed methods every caller uses, and what they promise;
- `postgres.py`: `PostgresData`, the real one; every statement is named in `queries.sql`;
- `memory.py`: `MemoryData`, its in-memory twin for unit tests (`memory_query.py`: the
  query language on its rows);
- `rows.py`: the typed rows; those written in bulk are their own column lists;
- `locks.py`: every advisory lock, named once;
- `databases.py`: making and dropping a whole database (the dev stack, tests, benchmarks);
- `filters.py`: the query language (`weir.api.query`, `weir.api.tasks`), checked and
  compiled to parameterised SQL.

"Where is the SQL for X?": the method `X` in postgres.py names its statement in queries.sql.
"""

from weir_scheduler.data import rows
from weir_scheduler.data.layer import ConcurrencyError, DataLayer, Leadership
from weir_scheduler.data.locks import Lock
from weir_scheduler.data.rows import *  # noqa: F403 (every row type)

__all__ = ["ConcurrencyError", "DataLayer", "Leadership", "Lock", *rows.__all__]
