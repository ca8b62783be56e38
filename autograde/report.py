"""grades.csv and report.html, regenerated from the gradebook's standing after every command
(``standing.refresh``; written atomically)."""
from __future__ import annotations

import csv
import html
import io
import os
from collections import Counter, defaultdict
from pathlib import Path

from . import similarity, static
from .results import Result

COLUMNS = ["student_id", "assignment", "item", "score", "max_score", "late_penalty", "status", "flags", "review",
           "mistake", "message", "comment", "notes"]


def write(out: Path, results: list[Result]) -> None:
    _atomic_write(out / "grades.csv", grades_csv(results))
    _atomic_write(out / "report.html", report_html(results, similarity.similar_pairs(out)))


def rows(results: list[Result]) -> list[dict]:
    table = []
    for result in results:
        for item in result.items:
            table.append({"student_id": result.student, "assignment": result.assignment, "item": item.item,
                          "score": "" if item.score is None else item.score, "max_score": item.max_score,
                          "late_penalty": result.late_penalty or "",
                          "status": result.status.value, "flags": ";".join(result.flags),
                          "review": " | ".join(static.Review(**r).as_text() for r in result.review),
                          "mistake": item.mistake or "", "message": item.message, "comment": item.comment,
                          "notes": "; ".join(result.notes + [m for m in (result.reason, result.late) if m])})
    return table


def total(result: Result) -> float:
    """A submission's points: its items' scores (none yet counts 0) minus the late penalty."""
    return sum(i.score or 0 for i in result.items) - result.late_penalty


def grades_csv(results: list[Result]) -> str:
    """One row per student, assignment and graded item; an empty score waits for manual grading."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows(results))
    return buffer.getvalue()


def report_html(results: list[Result], similar: list[similarity.Pair] = ()) -> str:
    by_assignment = defaultdict(list)
    for result in results:
        by_assignment[result.assignment].append(result)
    parts = ["<!doctype html><meta charset='utf-8'><title>Autograding report</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}td:first-child{text-align:left}"
             ".bar{fill:#4c72b0}.warn{background:#fff3cd;padding:.5em 1em}code{white-space:pre-wrap}</style>"
             "<h1>Autograding report</h1>",
             "<p>Made from the gradebook (manual grades and late penalties included) by the last <code>grade</code>, "
             "<code>feedback</code> or <code>export</code> command: after grading by hand in formgrader, run "
             "<code>python -m autograde feedback</code> or <code>export</code> to bring it up to date.</p>"]
    warnings = sorted({w for r in results for w in r.warnings})
    if warnings:
        parts.append("<div class='warn'><h2>Limits the sandbox did not enforce</h2><ul>" +
                     "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul></div>")
    for assignment, group in sorted(by_assignment.items()):
        parts.append(f"<h2>{html.escape(assignment)} — {len(group)} students</h2>")
        parts.append(_table(["status", "students"], sorted(Counter(r.status.value for r in group).items())))
        parts.append("<h3>Items</h3>" + _item_table(group))
        parts.append("<h3>Total score (graded items, minus late penalties)</h3>" + _histogram(
            [total(r) for r in group], sum(i.max_score for i in group[0].items)))
        late = [(r.student, r.late_penalty, r.late) for r in group if r.late_penalty]
        if late:
            parts.append("<h3>Late submissions</h3>" + _table(["student", "penalty", "why"], late))
        mistakes = Counter((i.item, i.mistake) for r in group for i in r.items if i.mistake)
        parts.append("<h3>Recognised mistakes across the class</h3>")
        parts.append(_table(["item", "mistake", "students"], [(item, m, n) for (item, m), n in mistakes.most_common()])
                     if mistakes else "<p>None recognised.</p>")
        flagged = [(r.student, r.status.value, "; ".join(r.flags)) for r in group if r.flags]
        if flagged:
            parts.append("<h3>Flagged submissions (runtime evidence)</h3>" + _table(["student", "status", "flags"], flagged))
        review = [(r.student, f"{line['cell']}:{line['line']}", line["code"], line["why"]) for r in group
                  for line in r.review]
        if review:
            parts.append("<h3>Submissions to look at</h3><p>Lines a text scan found worth a look. They cost no "
                         "points: scores come only from what the code did when it ran.</p>" +
                         _table(["student", "where", "code", "why"], review))
        pairs = [(p.cell, p.first, p.second, f"{100 * p.similarity:.0f}%", p.tokens)
                 for p in similar if p.assignment == assignment]
        if pairs:
            parts.append("<h3>Unusually similar answers</h3><p>Answers whose code, with names, comments and layout "
                         f"taken out, shares at least {100 * similarity.THRESHOLD:.0f}% of its fingerprints with "
                         "another's (code most of the class wrote alike does not count). For a human to read side by "
                         "side; it changes no score.</p>" +
                         _table(["exercise", "student", "student", "similarity", "tokens"], pairs))
    return "\n".join(parts)


def _item_table(group: list[Result]) -> str:
    scores = defaultdict(list)
    maxima = {}
    for result in group:
        for item in result.items:
            maxima[item.item] = item.max_score
            scores[item.item].append(item.score)
    table = []
    for item, values in scores.items():
        graded = [v for v in values if v is not None]
        mean = sum(graded) / len(graded) if graded else float("nan")
        full = sum(v == maxima[item] for v in graded)
        table.append((item, maxima[item], len(graded), f"{mean:.2f}", f"{100 * full / max(len(graded), 1):.0f}%",
                      len(values) - len(graded)))
    return _table(["item", "max", "graded", "mean", "full marks", "awaiting manual grade"], table)


def _histogram(totals: list[float], maximum: float, bins: int = 10) -> str:
    """An inline SVG bar chart of the students' totals."""
    if not totals:
        return "<p>No submissions.</p>"
    top = maximum or max(totals) or 1
    counts = Counter(min(int(bins * t / top), bins - 1) for t in totals)
    width, height, tallest = 40, 120, max(counts.values())
    bars = []
    for b in range(bins):
        h = height * counts.get(b, 0) / tallest
        bars.append(f"<rect class='bar' x='{b * width + 30}' y='{height - h + 10}' width='{width - 4}' height='{h}'>"
                    f"<title>{counts.get(b, 0)} students</title></rect>"
                    f"<text x='{b * width + 30}' y='{height + 25}' font-size='10'>{b * top / bins:g}</text>")
    return (f"<svg width='{bins * width + 60}' height='{height + 40}' role='img' aria-label='score histogram'>"
            f"<text x='0' y='20' font-size='10'>{tallest}</text>{''.join(bars)}</svg>")


def _table(header: list[str], body) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    lines = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in body)
    return f"<table><tr>{head}</tr>{lines}</table>"


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
