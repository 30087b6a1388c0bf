"""chDB's Native output (revision 0) re-encoded for a client that sent `client_protocol_version`.

ClickHouse's HTTP handler writes Native blocks for the client revision it is given: with a revision
> 0 every block starts with a BlockInfo, and with a revision >= 54454 every column header carries a
"custom serialization" flag byte. clickhouse-go (Grafana's ClickHouse plugin) always sends
`client_protocol_version` and decodes with it; clickhouse-connect probes it once (`SELECT 1 AS check`).
chDB cannot be told a client revision, so this module walks chDB's revision-0 blocks (it must skip
each column's data to find the next header) and inserts those bytes. Column data is copied as is:
a revision-0 stream has no sparse columns, so the flag is always 0.

Supported: numbers, Bool, Date/Date32/DateTime/DateTime64, Decimal, UUID, IPv4/6, Enum, String,
FixedString, Nullable, Array, Tuple (named or not), Map, LowCardinality, SimpleAggregateFunction,
Nothing, Interval*. Anything else (AggregateFunction, Variant, Dynamic, JSON/Object) raises
`NativeUnsupported`: the caller turns that into a ClickHouse-style error.
"""

from __future__ import annotations

import struct

MIN_REVISION_WITH_CUSTOM_SERIALIZATION = 54454
BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"  # is_overflows=false, bucket_num=-1, end

_FIXED = {
    "UInt8": 1,
    "Int8": 1,
    "Bool": 1,
    "Enum8": 1,
    "UInt16": 2,
    "Int16": 2,
    "Date": 2,
    "Enum16": 2,
    "BFloat16": 2,
    "UInt32": 4,
    "Int32": 4,
    "Float32": 4,
    "DateTime": 4,
    "Date32": 4,
    "IPv4": 4,
    "Decimal32": 4,
    "Time": 4,
    "UInt64": 8,
    "Int64": 8,
    "Float64": 8,
    "DateTime64": 8,
    "Decimal64": 8,
    "Time64": 8,
    "UInt128": 16,
    "Int128": 16,
    "UUID": 16,
    "IPv6": 16,
    "Decimal128": 16,
    "UInt256": 32,
    "Int256": 32,
    "Decimal256": 32,
}
_LC_INDEX_SIZES = (1, 2, 4, 8)
_LC_HAS_ADDITIONAL_KEYS = 1 << 9


class NativeUnsupported(ValueError):
    """A column type this re-encoder cannot walk."""


def _split_type(type_name: str) -> tuple[str, list[str]]:
    """'Map(String, Array(UInt8))' -> ('Map', ['String', 'Array(UInt8)']); quotes and nesting respected."""
    type_name = type_name.strip()
    open_at = type_name.find("(")
    if open_at < 0 or not type_name.endswith(")"):
        return type_name, []
    base, inner = type_name[:open_at], type_name[open_at + 1 : -1]
    args, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(inner):
        ch = inner[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
        i += 1
    args.append(inner[start:].strip())
    return base, args


def _tuple_element_type(arg: str) -> str:
    """A Tuple element is `Type` or `name Type`."""
    base, _ = _split_type(arg)
    if " " in base.strip():  # 'a UInt64' or '`a b` String'
        if arg.startswith("`"):
            return arg[arg.index("`", 1) + 1 :].strip()
        return arg.split(None, 1)[1]
    return arg


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf, self.pos = buf, pos

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def string(self) -> str:
        size = self.varint()
        value = self.buf[self.pos : self.pos + size]
        self.pos += size
        return value.decode()

    def uint64(self) -> int:
        (value,) = struct.unpack_from("<Q", self.buf, self.pos)
        self.pos += 8
        return value

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.buf):
            raise NativeUnsupported("truncated Native data")
        self.pos += size


def _skip_prefix(reader: _Reader, type_name: str) -> None:
    base, args = _split_type(type_name)
    if base == "LowCardinality":
        reader.skip(8)  # key serialization version
    elif base in ("Array", "Nullable", "SimpleAggregateFunction"):
        _skip_prefix(reader, args[-1])
    elif base == "Tuple":
        for arg in args:
            _skip_prefix(reader, _tuple_element_type(arg))
    elif base == "Map":
        _skip_prefix(reader, args[0])
        _skip_prefix(reader, args[1])


def _skip_data(reader: _Reader, type_name: str, rows: int) -> None:
    base, args = _split_type(type_name)
    if base in _FIXED:
        reader.skip(_FIXED[base] * rows)
    elif base == "String":
        buf, pos = reader.buf, reader.pos
        for _ in range(rows):  # inlined varint + skip: the hot loop (strings shorter than 128 bytes mostly)
            byte = buf[pos]
            if byte < 0x80:
                pos += 1 + byte
            else:
                reader.pos = pos
                size = reader.varint()
                pos = reader.pos + size
        if pos > len(buf):
            raise NativeUnsupported("truncated Native data")
        reader.pos = pos
    elif base == "FixedString":
        reader.skip(int(args[0]) * rows)
    elif base == "Decimal":
        precision = int(args[0])
        reader.skip((4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32) * rows)
    elif base.startswith("Interval"):
        reader.skip(8 * rows)
    elif base == "Nothing":
        reader.skip(rows)
    elif base == "Nullable":
        reader.skip(rows)  # null map
        _skip_data(reader, args[0], rows)
    elif base in ("Array", "Map"):
        reader.skip(8 * (rows - 1))  # offsets are cumulative: the last one is the nested size
        nested_rows = reader.uint64()
        if base == "Array":
            _skip_data(reader, args[0], nested_rows)
        else:
            _skip_data(reader, args[0], nested_rows)
            _skip_data(reader, args[1], nested_rows)
    elif base == "Tuple":
        for arg in args:
            _skip_data(reader, _tuple_element_type(arg), rows)
    elif base == "SimpleAggregateFunction":
        _skip_data(reader, args[-1], rows)
    elif base == "LowCardinality":
        dictionary_type = args[0]
        inner_base, inner_args = _split_type(dictionary_type)
        if inner_base == "Nullable":
            dictionary_type = inner_args[0]
        done = 0
        while done < rows:  # one part per dictionary (low_cardinality_max_dictionary_size splits it)
            flags = reader.uint64()
            if flags & _LC_HAS_ADDITIONAL_KEYS:
                _skip_data(reader, dictionary_type, reader.uint64())
            part_rows = reader.uint64()
            reader.skip(_LC_INDEX_SIZES[flags & 0xFF] * part_rows)
            done += part_rows
    else:
        raise NativeUnsupported(f"column type {type_name} cannot be sent with client_protocol_version")


def reencode(native: bytes, revision: int) -> bytes:
    """chDB's revision-0 Native bytes (any number of blocks) as a server writes them for `revision`."""
    if revision <= 0 or not native:
        return native
    flag = b"\x00" if revision >= MIN_REVISION_WITH_CUSTOM_SERIALIZATION else b""
    out = bytearray()
    reader = _Reader(native)
    size = len(native)
    while reader.pos < size:
        start = reader.pos
        columns = reader.varint()
        rows = reader.varint()
        out += BLOCK_INFO
        out += native[start : reader.pos]
        for _ in range(columns):
            header_start = reader.pos
            reader.string()  # name
            type_name = reader.string()
            out += native[header_start : reader.pos]
            out += flag
            data_start = reader.pos
            if rows:
                _skip_prefix(reader, type_name)
                _skip_data(reader, type_name, rows)
            out += native[data_start : reader.pos]
    return bytes(out)
