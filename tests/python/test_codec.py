"""The extension's codecs: Python keys and values, and the C++-compatible codec.

The C++ side of the C++-compatible codec is a real C++ program,
cpp_codec_peer (tests/python/cpp_codec_peer.cc, built beside the package in
<build>/python/), whose bytes and fingerprints must match exactly.
"""

import dataclasses
import datetime
import decimal
import enum
import math
import os
import pathlib
import random
import subprocess
import sys
import typing
import zoneinfo
from pathlib import Path

import numpy as np
import pytest

from tcache import _tcache
from tcache._cpp_types import spec_of, specs_of_function
from tcache.errors import DecodeError

PACKAGE_PARENT = str(Path(_tcache.__file__).resolve().parent.parent)


class Color(enum.Enum):
    RED = 1
    GREEN = "g"


class Level(enum.IntEnum):
    ONE = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float = 0.0
    note: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass
class Box:
    items: list
    label: typing.Optional[str] = None


class Pair(typing.NamedTuple):
    a: int
    b: str


class Outer:
    class Inner(enum.Enum):
        X = 1


class Keyed:
    """An object with __tcache_key__: its key is what the method returns."""

    def __init__(self, ident, cache=None):
        self.ident = ident
        self.cache = cache

    def __tcache_key__(self):
        return ("Keyed", self.ident)


class Opaque:
    pass


UTC = datetime.timezone.utc
PARIS = zoneinfo.ZoneInfo("Europe/Paris")

# One of every value type, each with its type kept through a round trip.
VALUES = {
    "none": None,
    "true": True,
    "false": False,
    "int_zero": 0,
    "int_negative": -7,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "int_big": 2**200 + 5,
    "int_big_negative": -(2**64),
    "float": 1.25,
    "float_negative_zero": -0.0,
    "float_inf": float("-inf"),
    "complex": 1.5 - 2j,
    "str": "héllo ✓",
    "str_empty": "",
    "str_surrogate": "a\udc80b",
    "bytes": b"\x00\xffab",
    "bytearray": bytearray(b"xy"),
    "tuple": (1, "a", None),
    "tuple_empty": (),
    "list": [1, [2, [3]], {"k": (4,)}],
    "dict": {"b": 1, 2: [3], (1, 2): {"n": None}},
    "set": {1, "two", (3,)},
    "frozenset": frozenset({b"x", 2.5}),
    "enum": Color.GREEN,
    "int_enum": Level.ONE,
    "nested_enum": Outer.Inner.X,
    "datetime_naive": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "datetime_utc": datetime.datetime(2024, 1, 1, tzinfo=UTC),
    "datetime_offset": datetime.datetime(
        2024, 1, 1, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-3, minutes=-30))
    ),
    "datetime_zoneinfo": datetime.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
    "date": datetime.date(1999, 12, 31),
    "time": datetime.time(13, 14, 15, 16, tzinfo=UTC),
    "timedelta": datetime.timedelta(days=-2, seconds=3, microseconds=4),
    "decimal": decimal.Decimal("-1.2300"),
    "decimal_nan": decimal.Decimal("NaN"),
    "path": pathlib.Path("/tmp/a b/c"),
    "pure_windows_path": pathlib.PureWindowsPath("C:/x/y"),
    "dataclass": Point(1, 2.5, "n"),
    "dataclass_nested": Box([Point(3), Pair(1, "z")], "lbl"),
    "namedtuple": Pair(7, "seven"),
    "numpy_float32_2d": np.arange(12, dtype=np.float32).reshape(3, 4),
    "numpy_big_endian": np.array([1, 2, 3], dtype=">i4"),
    "numpy_strided": np.arange(10, dtype=np.int64)[::3],
    "numpy_fortran": np.asfortranarray(np.arange(6).reshape(2, 3)),
    "numpy_0d": np.array(3.5),
    "numpy_empty": np.zeros((0, 5), dtype=np.uint16),
    "numpy_str": np.array(["ab", "c"]),
    "numpy_datetime": np.array(["2020-01-01", "NaT"], dtype="datetime64[D]"),
    "numpy_bool": np.array([True, False]),
    "numpy_complex": np.array([1 + 2j]),
    "numpy_scalar_float64": np.float64(2.5),
    "numpy_scalar_int8": np.int8(-3),
    "numpy_scalar_bool": np.bool_(True),
}


def same(a, b):
    """Equal and of the same type, element by element for containers."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, decimal.Decimal) and a.is_nan():
        return b.is_nan()
    if isinstance(a, (list, tuple)) and not hasattr(a, "_fields"):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and a == b
    if isinstance(a, datetime.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    if isinstance(a, Box):
        return same(a.items, b.items) and a.label == b.label
    if isinstance(a, Point):
        return a == b and a.note == b.note
    return a == b


@pytest.mark.parametrize("name", sorted(VALUES))
def test_value_round_trip_keeps_type_and_value(name):
    value = VALUES[name]
    data = _tcache.encode_value(value)
    back = _tcache.decode_value(data)
    assert same(value, back), (value, back)
    # the same bytes through memoryview and bytearray
    assert same(_tcache.decode_value(memoryview(data)), value)


def test_value_nan_float_round_trips_as_nan():
    assert math.isnan(_tcache.decode_value(_tcache.encode_value(float("nan"))))


def test_decoded_numpy_array_is_writable_and_owns_its_memory():
    a = np.arange(1000, dtype=np.float64)
    b = _tcache.decode_value(_tcache.encode_value(a))
    b[0] = 42.0
    assert b.flags.writeable and b.flags.c_contiguous and a[0] == 0.0


def test_numpy_values_are_copied_in_bulk():
    a = np.arange(1 << 16, dtype=np.float64)
    data = _tcache.encode_value(a)
    # tag, dtype, shape and length headers, then exactly the array's bytes
    assert data.endswith(a.tobytes()) and len(data) < a.nbytes + 32


@pytest.mark.parametrize("name", sorted(VALUES))
def test_key_encoding_is_deterministic(name):
    value = VALUES[name]
    assert _tcache.encode_key(value) == _tcache.encode_key(value)


KEY_DISTINCT = [
    (1, True),
    (1, 1.0),
    (True, 1.0),
    (0, False),
    (0.0, -0.0),
    ([1, 2], (1, 2)),
    ((1, 2), Pair(1, "2")),
    ({1}, frozenset({1})),
    ("a", b"a"),
    (b"a", bytearray(b"a")),
    (1, Level.ONE),
    (1, Color.RED),
    ((1, 2.0), Point(1, 2.0)),
    (datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 1, tzinfo=UTC)),
    (datetime.date(2024, 1, 1), datetime.datetime(2024, 1, 1)),
    (None, ()),
    ("1", 1),
    (2**64, float(2**64)),
    (np.array([1, 2], dtype=np.int32), np.array([1, 2], dtype=np.int64)),
    (np.array([1, 2, 3, 4]), np.array([[1, 2], [3, 4]])),
    (decimal.Decimal("1"), 1),
    (pathlib.PurePosixPath("a"), "a"),
    ((("a",),), (("a"),)),
    ({"a": 1}, [("a", 1)]),
]


@pytest.mark.parametrize("a,b", KEY_DISTINCT, ids=lambda v: type(v).__name__)
def test_different_values_are_different_keys(a, b):
    assert _tcache.encode_key(a) != _tcache.encode_key(b)


KEY_EQUAL = [
    ({"a": 1, "b": 2, 3: 4}, {3: 4, "b": 2, "a": 1}),
    ({"x", "y", "z", "w"}, {"w", "z", "y", "x"}),
    (frozenset(range(100)), frozenset(reversed(range(100)))),
    (float("nan"), -float("nan")),
    (decimal.Decimal("1.0"), decimal.Decimal("1.000")),
    (decimal.Decimal("100"), decimal.Decimal("1E+2")),
    (Point(1, 2.0, "one"), Point(1, 2.0, "another")),  # note has compare=False
    (Keyed(3), Keyed(3, cache={"ignored": 1})),
    (np.arange(6)[::2], np.array([0, 2, 4])),
    (np.asfortranarray(np.arange(6).reshape(2, 3)), np.arange(6).reshape(2, 3)),
]


@pytest.mark.parametrize("a,b", KEY_EQUAL, ids=lambda v: type(v).__name__)
def test_equal_values_are_one_key(a, b):
    assert _tcache.encode_key(a) == _tcache.encode_key(b)


def test_tcache_key_wins_and_keys_by_class():
    class Other:
        def __tcache_key__(self):
            return ("Keyed", 3)

    assert _tcache.encode_key(Keyed(3)) != _tcache.encode_key(Keyed(4))
    assert _tcache.encode_key(Keyed(3)) != _tcache.encode_key(Other())
    assert _tcache.encode_key(Keyed(3)) != _tcache.encode_key(("Keyed", 3))


def test_int_keys_of_any_size():
    keys = {_tcache.encode_key(v) for v in [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**100]}
    assert len(keys) == 5


def test_unsupported_key_says_to_pass_key_or_ignore():
    with pytest.raises(TypeError) as e:
        _tcache.encode_key((1, Opaque()))
    message = str(e.value)
    assert "Opaque" in message and "key=" in message and 'ignore=("self",)' in message


def test_unsupported_value_names_serializer_unless_pickle_is_allowed():
    with pytest.raises(TypeError, match="serializer="):
        _tcache.encode_value([1, Opaque()])
    data = _tcache.encode_value([1, Opaque()], allow_pickle=True)
    back = _tcache.decode_value(data, allow_pickle=True)
    assert back[0] == 1 and type(back[1]) is Opaque
    with pytest.raises(DecodeError, match="pickle"):
        _tcache.decode_value(data)


def test_object_dtype_arrays_are_not_encoded_safely():
    with pytest.raises(TypeError, match="dtype"):
        _tcache.encode_key(np.array([object()]))
    with pytest.raises(TypeError, match="serializer="):
        _tcache.encode_value(np.array([object()], dtype=object))


def test_other_tzinfo_is_a_key_but_not_a_safe_value():
    class Fixed(datetime.tzinfo):
        def utcoffset(self, dt):
            return datetime.timedelta(hours=1)

        def tzname(self, dt):
            return "F"

    dt = datetime.datetime(2024, 1, 1, tzinfo=Fixed())
    assert _tcache.encode_key(dt) != _tcache.encode_key(dt.replace(tzinfo=None))
    with pytest.raises(TypeError, match="tzinfo"):
        _tcache.encode_value(dt)


def test_nesting_is_bounded_with_a_clear_error():
    deep = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        _tcache.encode_key(deep)
    with pytest.raises(ValueError, match="nested deeper"):
        _tcache.encode_value(deep)
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper"):
        _tcache.encode_key(loop)
    # hostile bytes: a list in a list ... 1000 deep
    with pytest.raises(DecodeError, match="nested deeper"):
        _tcache.decode_value(b"\x0c\x01" * 1000 + b"\x00")


def test_decode_never_imports_and_needs_the_class():
    data = bytearray(_tcache.encode_value(Color.RED))
    module = b"__main__" if Color.__module__ == "__main__" else Color.__module__.encode()
    at = data.index(module)
    name = b"tcache_no_such_mod"[: len(module)].ljust(len(module), b"x")
    data[at : at + len(module)] = name
    assert name.decode() not in sys.modules
    with pytest.raises(DecodeError, match="not loaded"):
        _tcache.decode_value(bytes(data))
    assert name.decode() not in sys.modules


def test_decode_rejects_a_class_that_changed():
    data = _tcache.encode_value(Pair(1, "a"))
    data = data.replace(b"Pair", b"Poir")
    with pytest.raises(DecodeError):
        _tcache.decode_value(data)


def test_keys_equal_across_interpreters_with_different_hash_seeds():
    program = (
        "import sys, datetime, decimal, pathlib\n"
        "from tcache import _tcache\n"
        "v = ({'x', 'y', 'zz', 'w', 'hello'}, frozenset({'a', 'b', 'c', ('d', 1)}),\n"
        "     {'k%d' % i: {str(i), i} for i in range(20)}, 2**100, -0.5,\n"
        "     datetime.datetime(2024, 5, 6, 7), decimal.Decimal('3.140'),\n"
        "     pathlib.PurePosixPath('/a'), b'raw')\n"
        "sys.stdout.write(_tcache.encode_key(v).hex())\n"
    )
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=PACKAGE_PARENT)
        out = subprocess.run(
            [sys.executable, "-c", program], env=env, check=True, capture_output=True, text=True
        ).stdout
        outputs.add(out)
    assert len(outputs) == 1 and len(outputs.pop()) > 100


def test_python_fingerprint_is_no_cpp_types():
    fingerprint = _tcache.python_fingerprint()
    assert fingerprint == _tcache.python_fingerprint()
    for spec in SPECS.values():
        assert _tcache.cpp_fingerprint(spec) != fingerprint


# ---- hostile bytes: only DecodeError -----------------------------------------


def _decode_only_decode_error(data, allow_pickle=False):
    try:
        _tcache.decode_value(data, allow_pickle=allow_pickle)
    except DecodeError:
        pass


def test_truncated_values_raise_decode_error():
    for name, value in VALUES.items():
        data = _tcache.encode_value(value)
        for n in range(len(data)):
            with pytest.raises(DecodeError):
                _tcache.decode_value(data[:n])
        with pytest.raises(DecodeError, match="trailing"):
            _tcache.decode_value(data + b"\x00")


def test_mutated_values_raise_only_decode_error():
    rng = random.Random(20261204)
    corpus = [_tcache.encode_value(v) for v in VALUES.values()]
    corpus.append(_tcache.encode_value(list(VALUES.values())))
    for _ in range(20000):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            at = rng.randrange(len(data) + 1)
            if op < 0.5 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif op < 0.75:
                data[at:at] = bytes([rng.randrange(256)])
            else:
                del data[at : at + rng.randint(1, 8)]
        _decode_only_decode_error(bytes(data))


def test_random_bytes_raise_only_decode_error():
    rng = random.Random(7)
    for _ in range(20000):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 24)))
        _decode_only_decode_error(data)


def test_hostile_lengths_allocate_nothing():
    huge = b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f"  # a varint near 2**63
    for tag in range(29):
        with pytest.raises(DecodeError):
            _tcache.decode_value(bytes([tag]) + huge)
    # a numpy array claiming a huge shape of a zero-size dtype
    fake = b"\x19\x03<U0\x01" + huge + b"\x00"
    with pytest.raises(DecodeError):
        _tcache.decode_value(fake)
    with pytest.raises(DecodeError, match="dtype"):
        _tcache.decode_value(b"\x1a\x03|O8\x08" + bytes(8))


# ---- the C++-compatible codec ---------------------------------------------------

I64, F64, BOOL, STR, BYTES = ("int64",), ("double",), ("bool",), ("string",), ("bytes",)

# name -> (Python value, spec); the same table as cpp_codec_peer.cc.
CPP_CASES = {
    "int64_zero": (0, I64),
    "int64_negative": (-5, I64),
    "int64_max": (2**63 - 1, I64),
    "int64_min": (-(2**63), I64),
    "double": (1.5, F64),
    "double_nan": (float("nan"), F64),
    "double_negative_zero": (-0.0, F64),
    "double_inf": (float("-inf"), F64),
    "bool_true": (True, BOOL),
    "bool_false": (False, BOOL),
    "string_empty": ("", STR),
    "string_utf8": ("héllo", STR),
    "bytes": (b"\x00\x01\xff", BYTES),
    "optional_none": (None, ("optional", I64)),
    "optional_string": ("x", ("optional", STR)),
    "vector_int64": ([1, 2, -3], ("vector", I64)),
    "vector_double": ([0.5, float("nan")], ("vector", F64)),
    "vector_string": (["a", "bc"], ("vector", STR)),
    "vector_bool_empty": ([], ("vector", BOOL)),
    "tuple": ((7, "q", 2.5), ("tuple", I64, STR, F64)),
    "tuple_empty": ((), ("tuple",)),
    "map_string_int64": ({"b": 1, "a": 2, "é": 3, "z": 4, "": 5}, ("map", STR, I64)),
    "map_int64_vector": ({3: [], -1: [4, 5], 0: [6]}, ("map", I64, ("vector", I64))),
    "map_double_string": ({2.0: "b", -0.5: "a", float("-inf"): "c"}, ("map", F64, STR)),
    "map_optional_bool": ({None: True, -3: False, 2: True}, ("map", ("optional", I64), BOOL)),
    "map_tuple_int64": (
        {(1, "b"): 1, (1, "a"): 2, (0, "z"): 3},
        ("map", ("tuple", I64, STR), I64),
    ),
    "map_vector_int64": (
        {(1, 2): 1, (1,): 2, (): 3, (0, 9): 4},
        ("map", ("vector", I64), I64),
    ),
    "map_bytes_int64": ({b"\xff": 1, b"\x01\x00": 2, b"\x01": 3}, ("map", BYTES, I64)),
    "map_bool_string": ({True: "t", False: "f"}, ("map", BOOL, STR)),
    "nested": (
        [None, {"k": [1.0, -2.0], "a": []}],
        ("vector", ("optional", ("map", STR, ("vector", F64)))),
    ),
    "map_of_maps": (
        {"x": {2: "b", 1: "a"}, "w": {}},
        ("map", STR, ("map", I64, STR)),
    ),
}
SPECS = {name: spec for name, (_, spec) in CPP_CASES.items()}


@pytest.fixture(scope="module")
def cpp_table(build_dir):
    peer = build_dir / "python" / "cpp_codec_peer"
    if not peer.exists():
        pytest.fail(f"cpp_codec_peer is not built at {peer}: build it with "
                    f"`cmake --build {build_dir} --target cpp_codec_peer` (needs TCACHE_BUILD_TESTS)")
    rows = {}
    out = subprocess.run([str(peer)], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, data, fingerprint = line.split()
        rows[name] = (bytes.fromhex("" if data == "-" else data), int(fingerprint, 16))
    return rows


def test_peer_and_python_tables_list_the_same_cases(cpp_table):
    assert set(cpp_table) == set(CPP_CASES) | {"args"}


@pytest.mark.parametrize("name", sorted(CPP_CASES))
def test_cpp_encode_is_tcache_codec_bytes(cpp_table, name):
    value, spec = CPP_CASES[name]
    data, fingerprint = cpp_table[name]
    assert _tcache.cpp_encode(value, spec).hex() == data.hex()
    assert _tcache.cpp_fingerprint(spec) == fingerprint


def _as_python(value):
    """The Python value cpp_decode gives for a case (lists for vectors)."""
    if isinstance(value, tuple):
        return tuple(_as_python(v) for v in value)
    if isinstance(value, list):
        return [_as_python(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_python(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name", sorted(CPP_CASES))
def test_cpp_decode_reads_cpp_bytes(cpp_table, name):
    value, spec = CPP_CASES[name]
    back = _tcache.cpp_decode(cpp_table[name][0], spec)
    if name in ("double_nan", "vector_double"):
        assert _tcache.cpp_encode(back, spec) == cpp_table[name][0]
        return
    assert back == _as_python(value)
    assert _tcache.cpp_encode(back, spec) == cpp_table[name][0]


def test_cpp_encode_args_is_encode_args(cpp_table):
    data, fingerprint = cpp_table["args"]
    assert _tcache.cpp_encode_args((5, "x", 1.0), [I64, STR, F64]) == data
    assert _tcache.cpp_fingerprint(("tuple", I64, STR, F64)) == fingerprint


def test_cpp_decoded_map_is_in_cpp_order(cpp_table):
    back = _tcache.cpp_decode(cpp_table["map_string_int64"][0], SPECS["map_string_int64"])
    assert list(back) == ["", "a", "b", "z", "é"]  # UTF-8 bytes, unsigned


def test_cpp_decode_of_hostile_bytes_raises_decode_error(cpp_table):
    rng = random.Random(99)
    for name, (data, _) in cpp_table.items():
        spec = SPECS.get(name)
        if spec is None:
            continue
        for n in range(len(data)):
            with pytest.raises(DecodeError):
                _tcache.cpp_decode(data[:n], spec)
        for _ in range(300):
            mutated = bytearray(data)
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            try:
                _tcache.cpp_decode(bytes(mutated), spec)
            except DecodeError:
                pass


def test_cpp_decode_rejects_what_cpp_rejects():
    two = bytes.fromhex("0200000000000000")
    key_a = bytes.fromhex("010000000000000061")
    one = bytes.fromhex("0100000000000000")
    with pytest.raises(DecodeError, match="strictly increasing"):
        _tcache.cpp_decode(two + key_a + one + key_a + one, ("map", STR, I64))
    with pytest.raises(DecodeError, match="not 0 or 1"):
        _tcache.cpp_decode(b"\x02", BOOL)
    with pytest.raises(DecodeError, match="NaN"):
        _tcache.cpp_decode(bytes.fromhex("010000000000f87f"), F64)
    with pytest.raises(DecodeError, match="UTF-8"):
        _tcache.cpp_decode(one + b"\xff", STR)
    with pytest.raises(DecodeError, match="trailing"):
        _tcache.cpp_decode(bytes(9), I64)
    # counts are checked against the bytes left before anything is built
    with pytest.raises(DecodeError, match="claims 2 elements"):
        _tcache.cpp_decode(two + bytes(9), ("vector", I64))
    with pytest.raises(DecodeError, match="claims 2 elements"):
        _tcache.cpp_decode(two + bytes(31), ("map", STR, ("tuple", I64, F64)))


def test_cpp_encode_refuses_wrong_types_and_ranges():
    with pytest.raises(TypeError, match="std::int64_t"):
        _tcache.cpp_encode(1.0, I64)
    with pytest.raises(ValueError, match="out of range"):
        _tcache.cpp_encode(2**63, I64)
    with pytest.raises(TypeError, match="bool"):
        _tcache.cpp_encode(1, BOOL)
    with pytest.raises(TypeError, match="std::string"):
        _tcache.cpp_encode(b"x", STR)
    with pytest.raises(TypeError, match="std::vector"):
        _tcache.cpp_encode({1, 2}, ("vector", I64))
    with pytest.raises(TypeError, match="2 items"):
        _tcache.cpp_encode((1,), ("tuple", I64, I64))
    with pytest.raises(ValueError, match="NaN"):
        _tcache.cpp_encode({float("nan"): 1}, ("map", F64, I64))
    with pytest.raises(TypeError, match="arguments"):
        _tcache.cpp_encode_args((1, 2), [I64])

    class Index:
        def __init__(self, v):
            self.v = v

        def __index__(self):
            return self.v

    with pytest.raises(ValueError, match="one key"):
        _tcache.cpp_encode({Index(1): 1, Index(1): 2}, ("map", I64, I64))
    assert _tcache.cpp_encode(Index(3), I64) == _tcache.cpp_encode(3, I64)
    assert _tcache.cpp_encode(np.int32(3), I64) == _tcache.cpp_encode(3, I64)
    assert _tcache.cpp_encode(2, F64) == _tcache.cpp_encode(2.0, F64)
    assert _tcache.cpp_encode(bytearray(b"ab"), BYTES) == _tcache.cpp_encode(b"ab", BYTES)


@pytest.mark.parametrize(
    "spec",
    [(), ("int32",), "int64", ("vector",), ("map", I64), ("optional", I64, I64), ("vector", "int64"), (1,)],
)
def test_bad_specs_raise_value_error(spec):
    with pytest.raises(ValueError, match="spec|C\\+\\+ type"):
        _tcache.cpp_fingerprint(spec)


# ---- annotations -> specs -----------------------------------------------------


@pytest.mark.parametrize(
    "annotation,spec",
    [
        (int, I64),
        (float, F64),
        (bool, BOOL),
        (str, STR),
        (bytes, BYTES),
        (typing.Optional[int], ("optional", I64)),
        (str | None, ("optional", STR)),
        (None | float, ("optional", F64)),
        (list[int], ("vector", I64)),
        (typing.List[str], ("vector", STR)),
        (tuple[int, str], ("tuple", I64, STR)),
        (typing.Tuple[()], ("tuple",)),
        (dict[str, list[float]], ("map", STR, ("vector", F64))),
        (typing.Dict[int, typing.Optional[bytes]], ("map", I64, ("optional", BYTES))),
        (list[tuple[int, dict[str, bool]]], ("vector", ("tuple", I64, ("map", STR, BOOL)))),
    ],
)
def test_spec_of_maps_the_table(annotation, spec):
    assert spec_of(annotation) == spec
    _tcache.cpp_fingerprint(spec)  # a spec the extension accepts


@pytest.mark.parametrize(
    "annotation",
    [list, dict, tuple[int, ...], int | str, typing.Any, "int", None, set[int], Level, complex,
     list[complex], dict[str, object], typing.Optional[typing.Union[int, str]]],
)
def test_spec_of_refuses_what_does_not_map(annotation):
    assert spec_of(annotation) is None


def test_specs_of_function():
    def price(sym: str, day: int, scale: float = 1.0) -> dict[str, float]:
        return {}

    def loose(sym, day: int) -> float:
        return 0.0

    def no_return(x: int):
        return x

    def star(*xs: int) -> int:
        return 0

    class Model:
        def predict(self, x: list[float]) -> float:
            return 0.0

    assert specs_of_function(price) == ([STR, I64, F64], ("map", STR, F64))
    assert specs_of_function(loose) is None
    assert specs_of_function(no_return) is None
    assert specs_of_function(star) is None
    assert specs_of_function(Model.predict) is None
    assert specs_of_function(Model.predict, ignore=("self",)) == ([("vector", F64)], F64)


@dataclasses.dataclass(frozen=True, slots=True)
class Strict:
    a: int
    b: list = dataclasses.field(default_factory=list)
    c: int = dataclasses.field(init=False, default=3)

    def __post_init__(self):
        if self.a < 0:
            raise ValueError("a < 0")


def test_dataclass_with_slots_frozen_and_init_false_fields_round_trips_without_init():
    value = Strict(1, [2])
    back = _tcache.decode_value(_tcache.encode_value(value))
    assert back == value and back.c == 3 and type(back) is Strict
    # a stored value is rebuilt as it was, not validated again by __post_init__
    forged = object.__new__(Strict)
    for name, v in (("a", -1), ("b", []), ("c", 3)):
        object.__setattr__(forged, name, v)
    assert _tcache.decode_value(_tcache.encode_value(forged)).a == -1
