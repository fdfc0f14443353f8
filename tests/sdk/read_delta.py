"""Reads a Delta table with the independent `deltalake` Python package.

Usage: read_delta.py TABLE_URI. Prints one JSON object per row, timestamps
as integer microseconds since the epoch and dates as ISO text, so the test
can compare them with what Warren wrote.
"""

import json
import os
import sys

import pyarrow as pa
from deltalake import DeltaTable

table = DeltaTable(sys.argv[1]).to_pyarrow_table()
for field in table.schema:
    if pa.types.is_timestamp(field.type):
        index = table.schema.get_field_index(field.name)
        table = table.set_column(index, field.name, table.column(field.name).cast(pa.int64()))
for row in table.to_pylist():
    print(json.dumps(row, default=str))
# Leave without interpreter teardown: the Delta reader's native threads can
# abort the process ("terminate called without an active exception") when
# they are torn down at exit under load, after every row was printed.
sys.stdout.flush()
os._exit(0)
