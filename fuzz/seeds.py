#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (run from anywhere: `python3 fuzz/seeds.py`).

Seeds are the inputs each parser is meant to take, a few it must refuse, and the shapes a
fuzzer takes long to find (a valid protobuf, a masked WebSocket frame). The config seeds
are the repo's own config files. Files are named by content, so rerunning adds nothing new
and crashes found later can be kept beside them (`fuzz/corpus/{target}/crash-*`).
"""
import hashlib
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent


def put(target, data, name=None):
    d = ROOT / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    (d / name).write_bytes(data)


# --- protobuf, by hand -------------------------------------------------------------
def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_var(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


def f_double(num, v):
    return varint(num << 3 | 1) + struct.pack("<d", v)


def ts(seconds, nanos=0):
    return f_var(1, seconds) + f_var(2, nanos)


NOW = 1_795_392_000  # the targets' "now", seconds

# --- mqtt_message: topic \0 payload ----------------------------------------------------
mqtt = [
    ("gridsight/sensors/town-01-c01/smoke/smk-dipu-001",
     b'{"device_time": 1795392000123, "state": "alarm", "reading": 0.7}'),
    ("gridsight/sensors/town-01-c01/water_level/wl-1",
     b'{"device_time": "2026-11-23T08:00:00Z", "state": "normal"}'),
    ("gridsight/sensors/town-01/gas/g-9", b'{"device_time": 1, "state": "fault", "battery": 3}'),
    ("gridsight/sensors/nowhere/smoke/s-1", b'{"device_time": 1, "state": "alarm"}'),
    ("gridsight/sensors/town-01-c01/smoke", b'{"device_time": 1, "state": "alarm"}'),
    ("gridsight/sensors/town-01-c01/smoke/s 1", b'{}'),
    ("gridsight/sensors/town-01-c01/smoke/s-1", b'{"device_time": true, "state": "alarm"}'),
    ("gridsight/sensors/town-01-c01/smoke/s-1", b'{"device_time": 1, "state": "alarm", "reading": 1e999}'),
    ("gridsight/sensors/town-01-c01/smoke/s-1", b'{"device_time": 1, "state": "alarm"} trailing'),
    ("gridsight/sensors/town-01-c01/smoke/s-1", b'not json'),
    ("acme/wl/town-01-c01/WL-0042", b'{"lvl": 3.9, "t": 1732348800, "st": 1}'),
    ("acme/wl/town-01-c01/WL-0042", b'{"lvl": "3.9", "t": 1e300, "st": 9}'),
    ("acme/wl/town-01-c01/WL-0042", b'{"lvl": 3.9, "t": -1e300, "st": 7}'),
    ("acme/wl/town-01-c01/WL-0042", b''),
    ("vendor/gas/x/y", b'{"g": "town-01-c01", "id": "gx-1", "v": 7.5, "ts": "2026-11-23T08:00:00+08:00"}'),
    ("vendor/gas", b'{"g": "town-01", "id": 12, "v": 1, "ts": "1970-01-01T00:00:00Z"}'),
    ("ms/town-01-c01/manhole_cover/mh-3", b'{"s": "alarm", "t": 9223372036854775807}'),
    ("ms/town-01-c01/manhole_cover/mh-3", b'{"s": "normal", "t": "-9223372036854775808"}'),
    ("unknown/topic", b'{}'),
]
for topic, payload in mqtt:
    put("mqtt_message", topic.encode() + b"\0" + payload)

# --- config_file: the repo's own configs, and a few small ones -------------------------
for p in ["deploy/gridsight.example.toml", "deploy/rules.toml", "deploy/bench/rules-50.toml",
          "deploy/production/gridsight.toml"]:
    f = REPO / p
    if f.exists():
        put("config_file", f.read_bytes())
put("config_file", b"")
put("config_file", b'[store]\npath = "x"\n[api]\nplaintext = true\n[[grids]]\nid = "a"\nname = "A"\n')
put("config_file", b'[[grids]]\nid = "a"\nname = "A"\nparent = "a"\n')
put("config_file", b'[[grids]]\nid = "a"\nname = "A"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n'
                   b'[[cameras]]\nid = "c"\nurl = "rtsp://h/x"\nlocation = [0.5, 0.5]\n')
put("config_file", b'[api]\nbogus = 1\n[mqtt]\nport = 99999\n')
put("config_file", b'[[tokens]]\nname = "w"\nrole = "viewer"\ntoken_sha256 = "00"\n')

# --- grpc_request: selector byte + protobuf -------------------------------------------
report = (f_bytes(1, "k-1") + f_var(2, 1) + f_bytes(3, "A01.02") + f_bytes(4, "dispute at gate")
          + f_bytes(6, f_double(1, 30.63) + f_double(2, 119.67)) + f_bytes(7, "w-17")
          + f_bytes(8, "https://photos/1.jpg"))
grpc = [
    (0, report),
    (0, f_bytes(1, "k") + f_var(2, 2) + f_bytes(3, "x") + f_bytes(4, "y") + f_bytes(5, "town-01")
        + f_bytes(7, "w")),
    (0, f_bytes(1, "k") + f_var(2, 9) + f_bytes(6, f_double(1, float("nan")))),
    (1, f_bytes(1, "town-01") + f_var(2, 4) + f_var(3, 500) + f_var(4, 1)),
    (1, f_bytes(1, "nowhere") + f_var(3, 5)),
    (1, f_var(3, (1 << 64) - 1)),
    (2, f_bytes(1, f_bytes(1, "town-01") + f_var(4, 3)) + f_bytes(2, ts(NOW + 60)) + f_var(3, 3600)
        + f_bytes(4, "works on the pump")),
    (2, f_bytes(1, f_bytes(2, "smoke-near-water")) + f_bytes(2, ts(-(1 << 62))) + f_var(3, 1)
        + f_bytes(4, "c")),
    (2, f_bytes(1, f_var(4, 2)) + f_bytes(2, ts((1 << 62), 999_999_999)) + f_var(3, 604800)
        + f_bytes(4, "c")),
    (3, f_bytes(1, "inc-1") + f_var(2, 2) + f_var(3, 1) + f_bytes(5, "fire") + f_bytes(6, ts(NOW + 3600))),
    (3, f_bytes(1, "inc-1") + f_var(2, 6) + f_bytes(7, "inc-0")),
    (3, f_bytes(1, "inc-1") + f_var(2, 2) + f_bytes(5, "fire") + f_bytes(6, ts(-(1 << 63)))),
    (4, f_bytes(1, "county") + f_var(2, 2) + f_var(3, 1) + f_var(4, 50) + f_bytes(5, "12")),
    (4, f_var(4, 5000) + f_bytes(5, "-3")),
    (5, f_bytes(1, "al-1") + f_var(2, 3) + f_bytes(3, "seen")),
    (6, f_bytes(1, "al-1") + f_bytes(2, "   ")),
    (7, f_bytes(1, "al-1") + f_var(2, 2) + f_bytes(3, "fire") + f_bytes(4, ts(NOW + 600)) + f_bytes(5, "go")),
    (7, f_bytes(1, "al-1") + f_var(2, 2) + f_bytes(3, "fire") + f_bytes(4, ts((1 << 63) - 1))),
]
for which, body in grpc:
    put("grpc_request", bytes([which]) + body)


# --- ws: query \0 client frames ----------------------------------------------------------
def frame(opcode, payload, mask=b"\x11\x22\x33\x44", fin=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


ws = [
    (b"token=t&grid=town-01,town-01-c01&min_severity=major&exclude_muted=true&resume_after=20",
     frame(9, b"ping") + frame(8, b"\x03\xe8bye")),
    (b"resume_after=abc", b""),
    (b"min_severity=LOUD", frame(1, b"hello")),
    (b"exclude_muted=maybe&grid=", frame(2, b"\x00" * 300)),
    (b"grid=nowhere", frame(1, b"part", fin=False) + frame(0, b" two")),
    (b"resume_after=18446744073709551615", frame(1, b"\xff\xfe")),
    (b"grid=%74own-01&min_severity=info", frame(10, b"pong") + frame(1, b"x" * 70000)),
    (b"", frame(8, b"\x03")),
]
for query, frames in ws:
    put("ws", query + b"\0" + frames)
