"""What the student's code does, read with ``ast`` in the grader (the code never runs here).

Only student-editable cells are judged (solution cells and cells the student added); locked
cells are the course's own code. Three findings:

* ``reference:<name>`` — an exercise function is, or reaches, ppo_lab's reference for it
  (imported, aliased, through a helper, or through import/exec/getattr tricks): that item
  scores 0. (The check's run-time tripwire catches calls however obfuscated; this catches the
  code that was written.)
* ``monkeypatch:<target>`` — assigning to attributes of torch / numpy / builtins / ppo_lab /
  the test helpers, or editing ``sys.modules``: status ``tampered``.
* ``grader-files:<what>`` — naming the grading directory, the records, the gradebook, the
  notebooks or the results: status ``tampered``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

PROTECTED_MODULES = {"torch", "numpy", "builtins", "ppo_lab", "sys", "math", "random", "os", "json",
                     "importlib", "nbgrader", "nbclient", "ipykernel", "IPython", "pickle"}
HARMLESS_SETTINGS = ("os.environ", "torch.backends.")  # settings students may change; cannot sway a verdict
TEST_HELPERS = {"check", "verify", "run_answer", "answer_or_reference"}
# Inside an exercise function these reach code by a name the analysis cannot follow.
DYNAMIC_ACCESS = {"__import__", "import_module", "exec", "eval", "compile", "getattr", "globals", "vars",
                  "open", "reload", "modules", "__dict__", "__builtins__", "__globals__", "__wrapped__",
                  "__code__", "__closure__", "reference", "REGISTRY", "answer_or_reference"}
GRADER_WORDS = ("PPO_LAB_GRADING", "GRADING_DIR", "records.jsonl", "gradebook", ".ipynb", "grades.csv",
                "report.html", "autograded", "nbgrader_config", "_append_record", "_grading_seed",
                "solutions/", "/feedback")


@dataclass
class Findings:
    reference: set[str] = field(default_factory=set)  # exercise function names
    tampering: list[str] = field(default_factory=list)

    def flags(self) -> list[str]:
        return sorted(f"reference:{name}" for name in self.reference) + sorted(set(self.tampering))


def python_source(cell_source: str) -> str:
    """IPython syntax (magics, !shell) as the Python it stands for, so ``ast`` can read it."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def scan(student_cells: list[str], course_cells: list[str], reference_names: set[str]) -> Findings:
    """``student_cells``: code the student could edit; ``course_cells``: the locked cells (their
    imports say what ``np`` or ``torch`` mean in the student's cells)."""
    findings = Findings()
    student = [_parse(source) for source in student_cells]
    course = [_parse(source) for source in course_cells]
    modules = _module_aliases(course + student)
    tainted = _reference_aliases(student, reference_names, modules)
    functions = {node.name: node for tree in student for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    reaching = _functions_reaching(functions, tainted, modules)
    for name in reference_names:
        if name in reaching or name in tainted:
            findings.reference.add(name)
    for tree in student:
        findings.tampering += _monkeypatching(tree, modules) + _grader_files(tree)
    return findings


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(python_source(source))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])  # it fails when it runs; nothing to analyse


def _module_aliases(trees: list[ast.Module]) -> dict[str, str]:
    """local name -> module it stands for (``np`` -> ``numpy``, ``F`` -> ``torch.nn.functional``)."""
    aliases = {name: name for name in PROTECTED_MODULES}
    aliases["__builtins__"] = "builtins"
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.AST, modules: dict[str, str]) -> str | None:
    """``np.linalg.norm`` -> ``numpy.linalg.norm``; None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Subscript):
        return _dotted(node.value, modules)
    if not isinstance(node, ast.Name):
        return None
    return ".".join([modules.get(node.id, node.id), *reversed(parts)])


def _is_reference(node: ast.AST, reference_names: set[str], modules: dict[str, str]) -> bool:
    """Does this expression name ppo_lab's code outside the checks, or a reference by name?"""
    for sub in ast.walk(node):
        dotted = _dotted(sub, modules) if isinstance(sub, (ast.Name, ast.Attribute)) else None
        if dotted and dotted.split(".")[0] == "ppo_lab" and ".checks" not in dotted:
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in DYNAMIC_ACCESS | reference_names:
            return True
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "ppo_lab" in sub.value:
            return True
    return False


def _reference_aliases(trees, reference_names, modules) -> set[str]:
    """Module-level names bound to the reference (``from ppo_lab import pg_loss as f``, ``f = pl.pg_loss``)."""
    tainted = set()
    for tree in trees:
        for node in _module_level(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ppo_lab" \
                    and "checks" not in node.module.split("."):
                tainted |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                tainted |= {alias.asname or alias.name for alias in node.names if alias.name.split(".")[0] == "ppo_lab"}
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None \
                    and _is_reference(node.value, reference_names, modules):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                tainted |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
    return tainted - TEST_HELPERS


def _module_level(tree: ast.Module):
    """Every node outside function and class bodies: names bound there are globals."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))


def _local_names(function: ast.AST) -> set[str]:
    """Arguments and names assigned in the function: they shadow globals of the same name."""
    arguments = function.args
    names = {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                             arguments.vararg, arguments.kwarg] if a is not None}
    return names | {sub.id for sub in ast.walk(function) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store)}


def _functions_reaching(functions: dict[str, ast.AST], tainted: set[str], modules: dict[str, str]) -> set[str]:
    """Student functions that reach the reference (directly, through dynamic access, or through
    another student function that does)."""
    def direct(function) -> bool:
        global_tainted = tainted - _local_names(function)
        for sub in ast.walk(function):
            if isinstance(sub, ast.Name) and sub.id in global_tainted:
                return True
            if isinstance(sub, ast.Attribute) and sub.attr in DYNAMIC_ACCESS:
                return True
            if isinstance(sub, ast.Name) and sub.id in DYNAMIC_ACCESS:
                return True
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                module = sub.module if isinstance(sub, ast.ImportFrom) else sub.names[0].name
                if module and module.split(".")[0] in ("ppo_lab", "importlib"):
                    return True
            dotted = _dotted(sub, modules) if isinstance(sub, (ast.Name, ast.Attribute)) else None
            if dotted and dotted.split(".")[0] == "ppo_lab" and ".checks" not in dotted:
                return True
        return False

    reaching = {name for name, function in functions.items() if direct(function)}
    changed = True
    while changed:  # callers of reaching functions reach too
        changed = False
        for name, function in functions.items():
            if name not in reaching and any(isinstance(sub, ast.Name) and sub.id in reaching
                                            for sub in ast.walk(function)):
                reaching.add(name)
                changed = True
    return reaching


def _monkeypatching(tree: ast.Module, modules: dict[str, str]) -> list[str]:
    found = []

    def protected(target: ast.AST) -> str | None:
        dotted = _dotted(target, modules)
        if dotted is None:
            return None
        root = dotted.split(".")[0]
        if isinstance(target, (ast.Attribute, ast.Subscript)) and root in PROTECTED_MODULES \
                and not dotted.startswith(HARMLESS_SETTINGS):
            return dotted
        return None

    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call):
            name = _dotted(node.func, modules) or ""
            if name.split(".")[-1] in ("setattr", "delattr") and node.args:
                where = protected(ast.Attribute(value=node.args[0], attr="_")) if _dotted(node.args[0], modules) else None
                if where:
                    found.append(f"monkeypatch:{where.rsplit('.', 1)[0]}")
            if name.startswith("sys.modules.") or name.endswith("__dict__.update"):
                found.append(f"monkeypatch:{name}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in TEST_HELPERS:
            found.append(f"monkeypatch:{node.name}")
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name) and sub.id in TEST_HELPERS and isinstance(sub.ctx, (ast.Store, ast.Del)):
                    found.append(f"monkeypatch:{sub.id}")
            where = protected(target)
            if where:
                found.append(f"monkeypatch:{where}")
    return found


def _grader_files(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, (ast.Attribute, ast.Name)):
            text = node.attr if isinstance(node, ast.Attribute) else node.id
        if text:
            found += [f"grader-files:{word}" for word in GRADER_WORDS if word.lower() in text.lower()]
    return found
