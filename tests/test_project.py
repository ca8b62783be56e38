"""The project's own set-up: dependency lists that must agree, files that must exist."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names the torch package differently; everything else has the PyPI name.
CONDA_NAMES = {"pytorch": "torch"}


def _requirement(spec: str) -> tuple[str, str]:
    """'torch>=2.2' -> ('torch', '>=2.2'), with the name normalised as pip does."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec)
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return CONDA_NAMES.get(name, name), match.group(2).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return dict(_requirement(spec) for spec in specs)


def _environment_requirements() -> dict[str, str]:
    dependencies = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    specs = [d for d in dependencies if isinstance(d, str)]
    specs += [spec for d in dependencies if isinstance(d, dict) for spec in d.get("pip", [])]
    pairs = dict(_requirement(spec) for spec in specs)
    pairs.pop("python", None)
    pairs.pop("pip", None)
    return pairs


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_requirement_parser_sees_a_difference():
    # Guard for the test above: a changed range must not compare equal.
    assert _requirement("nbgrader>=0.9.5,<0.10") != _requirement("nbgrader>=0.9")
    assert _requirement("pytorch>=2.2") == ("torch", ">=2.2")


def test_torch_is_pinned_to_the_local_cpu_wheel_for_every_install():
    constraints = (ROOT / "requirements" / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", constraints, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "-c requirements/constraints.txt" in makefile
    # torch is installed before the project so no dependency can pull another build.
    assert makefile.index("torch==2.13.0") < makefile.index("-e '.[test]'")


def test_installed_torch_is_the_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert not torch.cuda.is_available()
    assert torch.version.cuda is None, "a CUDA build of torch was installed"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
