"""The grading protocol: everything the grader and the student's kernel exchange, in one place.

While grading, the grader (trusted, outside the sandbox) writes each check's cases into the box;
the kernel (untrusted) runs the student's answer on them and publishes its outputs as a record,
a display message of type ``RECORD_MIME`` that the grader takes off the kernel's output stream as
it arrives (so nothing the kernel does later can change it); the grader then judges the records
against its own copy of the cases. This module is part of the small kernel side
(``KERNEL_SIDE``) that the grading box gets of ``ppo_lab.checks``.
"""
from __future__ import annotations

import copy
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

GRADING_DIR_VARIABLE = "PPO_LAB_GRADING_DIR"  # set in the kernel's environment while grading
RECORD_MIME = "application/vnd.ppo-lab.record+json"  # a display message carrying one Record
CASES = "cases"  # in the grading dir: one pickle per (grade_id, hidden), written by the grader
# The modules of ppo_lab.checks that the grading box gets: no registry, reference, mistake or judge.
KERNEL_SIDE = ("__init__", "protocol", "runners", "student")


@dataclass
class Case:
    """One set of inputs. ``description`` is safe to show even for hidden cases."""

    description: str
    kwargs: dict[str, Any]

    def fresh_kwargs(self) -> dict[str, Any]:
        """Deep copies, so an answer that modifies its inputs in place cannot spoil the reference."""
        return copy.deepcopy(self.kwargs)


@dataclass(frozen=True)
class Record:
    """One check call's claim: "the answer produced these (encoded) outputs on the cases"."""

    grade_id: str
    hidden: bool
    outputs: list

    changed: tuple[str, ...] = ()  # measuring code the kernel found modified when it recorded

    def to_dict(self) -> dict:
        return {"grade_id": self.grade_id, "hidden": self.hidden, "outputs": self.outputs, "changed": list(self.changed)}

    @classmethod
    def from_dict(cls, data) -> "Record":
        """Raises ValueError for anything but a well-formed record (the kernel may send anything)."""
        try:
            record = cls(data["grade_id"], data["hidden"], data["outputs"], tuple(data.get("changed", ())))
            json.dumps(record.outputs)  # plain JSON data, and not absurdly nested
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            raise ValueError(f"malformed record: {type(error).__name__}") from None
        if not (isinstance(record.grade_id, str) and isinstance(record.hidden, bool)
                and isinstance(record.outputs, list) and all(isinstance(c, str) for c in record.changed)):
            raise ValueError("malformed record: wrong field types")
        return record


def case_file(grading_dir: str | Path, grade_id: str, hidden: bool) -> Path:
    return Path(grading_dir) / CASES / f"{grade_id}.{'hidden' if hidden else 'visible'}.pickle"


def write_cases(grading_dir: Path, grade_id: str, hidden: bool, run: Callable, cases: list[Case]) -> None:
    """Grader side: the runner (a function of ``runners``) and the inputs, for the kernel."""
    path = case_file(grading_dir, grade_id, hidden)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"run": run, "cases": cases}))


def read_cases(grading_dir: str, grade_id: str, hidden: bool) -> tuple[Callable, list[Case]]:
    """Kernel side. The file comes from the grader, so unpickling it trusts nobody but the grader."""
    path = case_file(grading_dir, grade_id, hidden)
    try:
        data = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        raise RuntimeError(f"no {'hidden' if hidden else 'visible'} cases for {grade_id!r} in this grading run") from None
    return data["run"], data["cases"]


def publish(record: Record) -> None:
    """Kernel side: send the record on the kernel's output stream (the grader keeps the first
    record of each check call that a test cell sends, and removes it from the notebook)."""
    from IPython.display import display

    display({RECORD_MIME: record.to_dict()}, raw=True)


# --- JSON encoding of outputs ------------------------------------------------------------------

def encode(value):
    """Outputs -> JSON-safe data. Tensors keep dtype and shape; anything else unknown is named."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu()
        return {"tensor": {"data": data.tolist(), "dtype": str(data.dtype).removeprefix("torch."),
                           "shape": list(data.shape)}}
    if isinstance(value, dict):
        return {"dict": {str(k): encode(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [encode(v) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    if hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalar
        return {"value": value.item()}
    return {"unsupported": type(value).__name__}


def decode(data):
    """Inverse of :func:`encode` (``None`` stays ``None``); malformed data decodes to a placeholder."""
    if data is None:
        return None
    if not isinstance(data, dict) or len(data) != 1:
        return Unsupported("malformed")
    (kind, payload), = data.items()
    if kind == "tensor":
        return _tensor(payload)
    if kind == "dict" and isinstance(payload, dict):
        return {k: decode(v) for k, v in payload.items()}
    if kind == "list" and isinstance(payload, list):
        return [decode(v) for v in payload]
    if kind == "value":
        return payload
    return Unsupported(str(payload))


def _tensor(payload):
    try:
        dtype = getattr(torch, payload["dtype"])
        if not isinstance(dtype, torch.dtype):
            raise TypeError(payload["dtype"])
        return torch.tensor(payload["data"], dtype=dtype).reshape(payload["shape"])
    except Exception:  # noqa: BLE001 - a forged or broken record is just a wrong answer
        return Unsupported("malformed tensor")


@dataclass(frozen=True)
class Unsupported:
    type_name: str

    def __repr__(self):
        return f"<{self.type_name}>"
