"""A reader of W&B's offline run files (``offline-run-*/run-<id>.wandb``), for the tracker tests.

wandb 0.31 has no Python reader of these files any more (its Go core reads them), so this one
follows the format: a 7-byte header (``b":W&B"``, the magic 0xBEE1 little-endian, a version byte),
then LevelDB log records in 32 KiB blocks counted from the start of the file: a 4-byte CRC-32C,
a 2-byte little-endian length, a 1-byte type (1 full, 2 first, 3 middle, 4 last; fewer than 7
bytes left in a block are padding) and the payload. The payloads joined are W&B's own protobuf
``wandb.proto.wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

MAGIC = b":W&B" + struct.pack("<H", 0xBEE1)
VERSION = 0
BLOCK = 32 * 1024
HEAD = 7  # CRC, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path | str) -> Iterator[bytes]:
    """The record payloads of a ``.wandb`` file, in order (a record split over blocks comes back whole)."""
    data = Path(path).read_bytes()
    if data[:6] != MAGIC or data[6] != VERSION:
        raise ValueError(f"{path}: not a W&B run file (header {data[:7]!r})")
    pos, parts = len(MAGIC) + 1, None
    while pos + HEAD <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEAD:  # the block's trailer: padding, the next record starts in the next block
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEAD])
        if kind == 0 and length == 0:  # zeros: preallocated space after the last record
            break
        body = data[pos + HEAD:pos + HEAD + length]
        if len(body) != length:
            raise ValueError(f"{path}: a record cut short at byte {pos}")
        pos += HEAD + length
        if kind == FULL:
            yield body
        elif kind == FIRST:
            parts = [body]
        elif kind in (MIDDLE, LAST):
            if parts is None:
                raise ValueError(f"{path}: a record continued at byte {pos} that never started")
            parts.append(body)
            if kind == LAST:
                yield b"".join(parts)
                parts = None
        else:
            raise ValueError(f"{path}: unknown record type {kind} at byte {pos}")


def records(path: Path | str) -> Iterator[Any]:
    """The file's ``Record`` messages (W&B's protobuf schema)."""
    from wandb.proto import wandb_internal_pb2 as pb

    for body in payloads(path):
        record = pb.Record()
        record.ParseFromString(body)
        yield record


def _item_key(item: Any) -> tuple[str, ...]:
    return (item.key,) if item.key else tuple(item.nested_key)


@dataclass
class WandbRun:
    """What one offline run file holds, decoded."""

    path: Path
    run_id: str = ""
    project: str = ""
    group: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: dict[int, dict[str, Any]] = field(default_factory=dict)  # _step -> {key: value}, objects as dicts
    artifacts: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (type, name, paths in its manifest)
    files: list[str] = field(default_factory=list)
    exit_code: int | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def files_dir(self) -> Path:
        return self.path.parent / "files"


def read_run(path: Path | str) -> WandbRun:
    out = WandbRun(Path(path))
    for record in records(path):
        kind = record.WhichOneof("record_type")
        out.kinds[kind] = out.kinds.get(kind, 0) + 1
        if kind == "run":
            run = record.run
            out.run_id, out.project, out.group, out.name = run.run_id, run.project, run.run_group, run.display_name
            for item in run.config.update:
                out.config[".".join(_item_key(item))] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out.config[".".join(_item_key(item))] = json.loads(item.value_json)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                key = _item_key(item)
                value = json.loads(item.value_json)
                if len(key) == 1:
                    row[key[0]] = value
                else:  # an object (a histogram, a table): {field: value} under its key
                    row.setdefault(key[0], {})["/".join(key[1:])] = value
            step = int(row["_step"])
            for k, v in row.items():
                if isinstance(v, dict) and isinstance(out.history.get(step, {}).get(k), dict):
                    out.history[step][k].update(v)
                else:
                    out.history.setdefault(step, {})[k] = v
        elif kind == "artifact":
            art = record.artifact
            out.artifacts.append((art.type, art.name, sorted(entry.path for entry in art.manifest.contents)))
        elif kind == "files":
            out.files += [f.path for f in record.files.files]
        elif kind == "exit":
            out.exit_code = record.exit.exit_code
    return out
