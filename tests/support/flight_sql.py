"""The raw Flight SQL protocol through pyarrow.flight, for tests that speak it below the client libraries:
commands spelled as protobuf by hand, prepared statements, and a client signed in as one of the test users."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight

from tests.support.cluster import FLIGHT_SQL_USERS

SQL_TYPES = "type.googleapis.com/arrow.flight.protocol.sql."


def pb(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (all the tests need to spell Flight SQL commands)."""
    length, n = b"", len(payload)
    while True:
        byte, n = n & 0x7F, n >> 7
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return bytes([(field << 3) | 2]) + length + payload


def pb_fields(data: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a protobuf message (enough to take a Flight SQL ticket apart)."""
    def varint(i: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            byte = data[i]
            value |= (byte & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if not byte & 0x80:
                return value, i
    fields, i = {}, 0
    while i < len(data):
        key, i = varint(i)
        length, i = varint(i)
        fields[key >> 3], i = data[i:i + length], i + length
    return fields


def command(name: str, body: bytes = b"") -> bytes:
    """A Flight SQL command: `body` (the message's fields) wrapped in an Any of type `name`."""
    return pb(1, (SQL_TYPES + name).encode()) + pb(2, body)


def statement_query(sql: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(command("CommandStatementQuery", pb(1, sql.encode())))


def batches_of(reader) -> list[pa.RecordBatch]:
    """Every batch of a DoGet stream as sent, empty ones included."""
    batches = []
    while True:
        try:
            batches.append(reader.read_chunk().data)
        except StopIteration:
            return batches


def prepare(client, options, sql: str) -> tuple[bytes, pa.Schema, pa.Schema]:
    """CreatePreparedStatement: (handle, dataset schema, parameter schema)."""
    action = flight.Action("CreatePreparedStatement", command("ActionCreatePreparedStatementRequest", pb(1, sql.encode())))
    result = pb_fields(pb_fields(next(iter(client.do_action(action, options))).body.to_pybytes())[2])
    return result[1], pa.ipc.read_schema(pa.py_buffer(result[2])), pa.ipc.read_schema(pa.py_buffer(result[3]))


def prepared_query(handle: bytes) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(command("CommandPreparedStatementQuery", pb(1, handle)))


def pyarrow_client(addr: str, user: str = "admin") -> tuple[flight.FlightClient, flight.FlightCallOptions]:
    """A client signed in as one of FLIGHT_SQL_USERS, and the options carrying its bearer token."""
    client = flight.FlightClient(f"grpc://{addr}")
    header = client.authenticate_basic_token(user, FLIGHT_SQL_USERS[user][0])
    return client, flight.FlightCallOptions(headers=[header])


def answer(client, options, sql: str) -> pa.Table:
    """The answer to `sql` through GetFlightInfo and DoGet."""
    info = client.get_flight_info(statement_query(sql), options)
    return client.do_get(info.endpoints[0].ticket, options).read_all()
