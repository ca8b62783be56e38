"""What grading one submission produces: typed, and the same in the journal, grades.csv and the report;
and the journal that keeps it."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path


class Status(str, Enum):
    """A submission's status, most telling first (the order ``worst`` uses).

    Every status but ``ok`` comes from what happened when the submission ran or was read, never
    from a text scan of its code."""

    INVALID = "invalid"  # the notebook could not be read or graded
    MISSING = "missing"  # no notebook for the assignment
    TAMPERED = "tampered"  # the kernel wrote malformed records into the grading channel
    KILLED = "killed"  # memory, output or process limit, or the kernel died
    TIMEOUT = "timeout"  # a cell or the whole notebook ran too long
    OK = "ok"

    @classmethod
    def worst(cls, statuses) -> "Status":
        order = list(cls)
        return min((cls(s) for s in statuses), key=order.index, default=cls.OK)


@dataclass
class Item:
    """One row of grades.csv: a grade cell of one student's notebook."""

    item: str  # grade_id
    notebook: str
    score: float | None  # None: waits for a manual grade
    max_score: float
    message: str = ""
    mistake: str | None = None
    comment: str = ""  # the grader's comment in formgrader (written answers)


@dataclass
class Result:
    student: str
    assignment: str
    status: Status = Status.OK
    reason: str = ""
    flags: list[str] = field(default_factory=list)  # runtime evidence (e.g. malformed-record)
    review: list[dict] = field(default_factory=list)  # static.Review as a dict: for a human, never points
    notes: list[str] = field(default_factory=list)  # what intake did (renamed notebook, extra files)
    warnings: list[str] = field(default_factory=list)  # limits the sandbox could not enforce
    items: list[Item] = field(default_factory=list)
    late_penalty: float = 0.0  # points taken for lateness (from the gradebook: standing.read)
    late: str = ""  # how late, for a human
    course_dir: str = ""  # the worker's throw-away course, merged by the parent
    retry: bool = False  # a grader failure: grade again on the next run

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_dict(cls, data: dict) -> "Result":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "status": Status(known.get("status", "ok")),
                      "items": [Item(**item) for item in known.get("items", [])]})


class Journal:
    """One JSON line per graded (student, assignment): the result and the fingerprint of what was
    graded (submission content + course source); the last line for a pair wins."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[tuple[str, str], tuple[Result, str]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    result = Result.from_dict(entry)
                except (ValueError, TypeError, KeyError):
                    continue  # the line being written when the grader was killed
                self.entries[(result.student, result.assignment)] = (result, entry["fingerprint"])

    def done(self, student: str, assignment: str, fingerprint: str) -> bool:
        result, done_fingerprint = self.entries.get((student, assignment), (None, None))
        return result is not None and done_fingerprint == fingerprint and not result.retry

    def append(self, result: Result, fingerprint: str) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({**result.to_dict(), "fingerprint": fingerprint}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[(result.student, result.assignment)] = (result, fingerprint)

    def results(self) -> list[Result]:
        return sorted((result for result, _ in self.entries.values()), key=lambda r: (r.assignment, r.student))
