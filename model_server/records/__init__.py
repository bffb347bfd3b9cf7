"""The request log's write path: every request (one row, its instances as arrays), written off
the request path in batches (RecordWriter) into the serving database
(housing.servingdb.RecordStore).

    writer = RecordWriter(store, spill_dir="state/spill")
    writer.start()
    writer.submit(records)  # on the request path: never raises, never waits
    ...
    writer.stop(timeout)  # at SIGTERM: flush; what the database cannot take is spilled
"""

from model_server.records.writer import RecordWriter

__all__ = ["RecordWriter"]
