"""`archive-core drivers new`: names, refusals, the generated files, and a generated driver that
fails the kit until its marked methods are written, then installs and passes it in a fresh venv.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import archive_core
from archive_core.cli import main
from archive_core.scaffold import (
    MARKED_METHODS,
    DriverNames,
    dependency_range,
    names_for,
)
from archive_core.testing import check_driver

REPO = Path(__file__).resolve().parents[1]


def _new(*args: str) -> Result:
    return CliRunner().invoke(main, ["drivers", "new", *args], catch_exceptions=False)


def _unique_name() -> str:
    # In-process imports of generated packages must not meet a module another test imported.
    return f"scaffolded_{uuid.uuid4().hex[:8]}"


def _generate(name: str, directory: Path) -> Path:
    result = _new(name, "--directory", str(directory))
    assert result.exit_code == 0, result.output
    return directory / names_for(name).distribution


# --- names -------------------------------------------------------------------------------------


def test_one_driver_name_gives_the_entry_point_distribution_package_and_class_names():
    assert names_for("acme_s3") == DriverNames(
        driver="acme_s3",
        distribution="archive-core-driver-acme-s3",
        package="archive_core_acme_s3",
        camel="AcmeS3",
    )
    assert names_for("x").camel == "X"
    assert names_for("a" * 40).package == "archive_core_" + "a" * 40


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("", "is empty"),
        ("Acme", "starts with 'A', not a lowercase letter"),
        ("3par", "starts with '3', not a lowercase letter"),
        ("_acme", "starts with '_', not a lowercase letter"),
        ("acme-s3", "holds '-'"),
        ("acme.s3", "holds '.'"),
        ("café", "holds 'é'"),
        ("a" * 41, "is 41 characters long, more than 40"),
        ("acme_", "ends in '_'"),
        ("acme__s3", "holds '__'"),
    ],
)
def test_a_bad_name_is_refused_with_exit_2_saying_what_is_wrong_and_writes_nothing(
    tmp_path: Path, name: str, complaint: str
):
    result = _new(name, "--directory", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"driver name {name!r} {complaint}" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


# --- refusing to overwrite ---------------------------------------------------------------------


@pytest.mark.parametrize("holding", [["work.py"], []], ids=["with files", "empty"])
def test_an_existing_directory_is_refused_with_exit_2_and_left_as_it_was(
    tmp_path: Path, holding: list[str]
):
    existing = tmp_path / "archive-core-driver-acme"
    existing.mkdir()
    for name in holding:
        (existing / name).write_text("the author's work\n")
    result = _new("acme", "--directory", str(tmp_path))
    assert result.exit_code == 2
    assert f"{existing} already exists; nothing was written" in result.output
    assert sorted(p.name for p in existing.iterdir()) == holding
    for name in holding:
        assert (existing / name).read_text() == "the author's work\n"


def test_a_directory_that_cannot_be_made_is_an_error_naming_it_not_a_traceback(tmp_path: Path):
    (tmp_path / "a-file").write_text("")
    result = _new("acme", "--directory", str(tmp_path / "a-file" / "below"))
    assert result.exit_code == 2
    assert f"cannot create {tmp_path / 'a-file' / 'below' / 'archive-core-driver-acme'}" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_a_write_that_fails_halfway_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    written: list[Path] = []
    write_text = Path.write_text

    def fail_third(self: Path, *args: object, **kwargs: object) -> int:
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(self)
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_third)
    result = _new("acme", "--directory", str(tmp_path))
    assert result.exit_code == 2
    assert "No space left on device; nothing was left behind" in result.output
    assert len(written) == 2 and list(tmp_path.iterdir()) == []


# --- the archive-core range --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "declared"),
    [
        ("0.1.0", ">=0.1,<1"),
        ("1.4.2", ">=1.4,<2"),
        ("2", ">=2.0,<3"),
        ("10.0.3", ">=10.0,<11"),
        ("1.4.2+ubuntu.1", ">=1.4,<2"),
        ("1.4.2.post1", ">=1.4,<2"),
        ("2.0.0rc1", ">=2.0.0rc1,<3"),
        ("1.5.0.dev3", ">=1.5.0.dev3,<2"),
    ],
)
def test_the_archive_core_range_runs_from_this_minor_version_to_the_next_major(
    version: str, declared: str
):
    assert dependency_range(version) == declared


def test_a_version_that_is_not_a_release_number_gives_no_range():
    with pytest.raises(ValueError, match="'unknown' is not a release number"):
        dependency_range("unknown")


# --- what is generated -------------------------------------------------------------------------


def test_the_command_lists_what_it_created_and_the_next_steps(tmp_path: Path):
    result = _new("acme_s3", "--directory", str(tmp_path))
    assert result.exit_code == 0, result.output
    top = tmp_path / "archive-core-driver-acme-s3"
    created = sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file())
    assert created == [
        ".github/workflows/test.yml",
        ".gitignore",
        "LICENSE",
        "README.md",
        "archive_core_acme_s3/__init__.py",
        "archive_core_acme_s3/driver.py",
        "pyproject.toml",
        "tests/test_conformance.py",
    ]
    for relative in created:
        assert str(top / relative) in result.output
    assert "put(), get(), remove()" in result.output
    assert f"pip install -e '{top}[testing]'" in result.output
    assert f"pytest {top}" in result.output
    assert "warning" not in result.output


def test_the_current_directory_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert _new("acme").exit_code == 0
    assert (tmp_path / "archive-core-driver-acme" / "pyproject.toml").is_file()


def test_a_name_an_installed_driver_has_is_created_with_a_warning(tmp_path: Path):
    result = _new("filesys", "--directory", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "warning: an installed distribution already registers a driver named 'filesys'" in (
        result.output
    )
    assert "archive-core-driver-filesys" in result.output
    assert (tmp_path / "archive-core-driver-filesys" / "pyproject.toml").is_file()


def test_the_pyproject_declares_the_entry_point_the_range_and_the_testing_extra(tmp_path: Path):
    top = _generate("acme_s3", tmp_path)
    project = tomllib.loads((top / "pyproject.toml").read_text())
    declared = dependency_range(archive_core.__version__)
    assert project["project"]["name"] == "archive-core-driver-acme-s3"
    assert project["project"]["version"] == "0.1.0"
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["project"]["dependencies"] == [f"archive-core{declared}"]
    assert project["project"]["license"] == {"text": "Apache-2.0"}
    assert project["project"]["optional-dependencies"] == {
        "testing": [f"archive-core[testing]{declared}"]
    }
    assert project["project"]["entry-points"] == {
        "archive_core.drivers": {"acme_s3": "archive_core_acme_s3.driver:AcmeS3Driver"}
    }
    assert project["build-system"]["build-backend"] == "hatchling.build"
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "archive_core_acme_s3"
    ]
    assert project["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    # The generated code is held to the lint settings of archive-core itself.
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["tool"]["ruff"] == ours["tool"]["ruff"]


def test_the_pyproject_keeps_a_commented_slot_for_the_storage_client_library(tmp_path: Path):
    text = (_generate("acme_s3", tmp_path) / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[\n(.*?)^\]", text, re.M | re.S)
    assert block, text
    lines = [line.strip() for line in block.group(1).splitlines()]
    assert lines[-1] == '# "boto3>=1.34,<2",'  # uncommented, it is a dependency like the pin
    assert any("client library" in line for line in lines if line.startswith("#"))
    filled = text.replace('    # "boto3>=1.34,<2",', '    "boto3>=1.34,<2",')
    assert tomllib.loads(filled)["project"]["dependencies"][-1] == "boto3>=1.34,<2"


def test_the_gitignore_keeps_what_the_kit_and_builds_write_out_of_the_distribution(
    tmp_path: Path,
):
    ignored = (_generate("acme_s3", tmp_path) / ".gitignore").read_text().splitlines()
    for entry in (".hypothesis/", ".pytest_cache/", "__pycache__/", "build/", "dist/"):
        assert entry in ignored
    assert "*.egg-info/" in ignored and ".venv/" in ignored


def test_the_licence_is_apache_2_0_as_archive_cores_with_the_way_to_choose_another(
    tmp_path: Path,
):
    top = _generate("acme_s3", tmp_path)
    licence = (top / "LICENSE").read_text()
    assert licence.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert ours == {"text": "Apache-2.0"}
    readme = (top / "README.md").read_text()
    assert "## Licence" in readme and "To ship it under other terms, replace both." in readme


def test_the_ci_workflow_lints_and_runs_the_kit_on_every_supported_python(tmp_path: Path):
    workflow = (_generate("acme_s3", tmp_path) / ".github" / "workflows" / "test.yml").read_text()
    assert "on:\n  push:\n  pull_request:\n" in workflow
    assert 'python-version: ["3.11", "3.12", "3.13"]' in workflow
    assert "python-version: ${{ matrix.python-version }}" in workflow  # GitHub's, not ours
    assert "python -m pip install -e '.[testing]' ruff" in workflow
    for command in ("ruff check .", "ruff format --check .", "python -m pytest -q"):
        assert command in workflow
    assert "\t" not in workflow  # YAML indents with spaces only
    steps = [line for line in workflow.splitlines() if line.lstrip().startswith("- ")]
    assert {len(line) - len(line.lstrip()) for line in steps} == {6}


def test_no_generated_file_leaves_a_todo_for_the_author(tmp_path: Path):
    top = _generate("acme_s3", tmp_path)
    for path in top.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for word in ("TODO", "FIXME", "XXX"):
                assert word not in text, f"{path.relative_to(top)} holds {word}"


def test_the_driver_leaves_exactly_put_get_and_remove_marked_for_the_author(tmp_path: Path):
    top = _generate("acme_s3", tmp_path)
    source = (top / "archive_core_acme_s3" / "driver.py").read_text()
    lines = source.splitlines()
    assert source.count("# FILL IN: ") == len(MARKED_METHODS)
    for method in MARKED_METHODS:
        function = _method(source, "AcmeS3Driver", method)
        docstring, statement = function.body
        assert isinstance(docstring, ast.Expr) and ast.get_docstring(function)
        assert isinstance(statement, ast.Raise)
        assert lines[statement.lineno - 2].strip() == f"# FILL IN: {method}"
        assert (
            isinstance(statement.exc, ast.Call) and statement.exc.func.id == "NotImplementedError"
        )
        [message] = statement.exc.args
        assert message.value.startswith(f"AcmeS3Driver.{method}() is not written yet: it must ")
    assert "class AcmeS3Config:" in source and 'name = "acme_s3"' in source


def test_the_readme_shows_how_an_admin_selects_the_driver_and_holds_no_links(tmp_path: Path):
    readme = (_generate("acme_s3", tmp_path) / "README.md").read_text()
    assert 'driver = "acme_s3"' in readme and 'settings = { location = "...",' in readme
    for method in MARKED_METHODS:
        assert f"`{method}(" in readme
    assert "pytest" in readme and "http" not in readme


def _ruff() -> str | None:
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.exists() else shutil.which("ruff")


@pytest.mark.parametrize("name", ["a", "acme_s3", "q" * 20 + "_" + "z" * 19])
def test_the_generated_python_is_ruff_clean_whatever_the_name_length(tmp_path: Path, name: str):
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed in this environment")
    top = _generate(name, tmp_path)
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [ruff, *command, "--no-cache", "."], cwd=top, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_listing_drivers_does_not_import_the_scaffolder(tmp_path: Path):
    probe = textwrap.dedent(
        """
        import sys
        from archive_core.cli import main
        try:
            main(["drivers", "--json"])
        except SystemExit as exit:
            assert not exit.code, exit.code
        assert "archive_core.scaffold" not in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "archive-core-driver-filesys" in done.stdout


def test_json_belongs_to_the_listing_not_to_new(tmp_path: Path):
    result = CliRunner().invoke(main, ["drivers", "--json", "new", "acme", "--directory", "x"])
    assert result.exit_code == 2
    assert "--json applies to the listing of drivers" in result.output


# --- the generated driver against the kit ------------------------------------------------------


def _method(source: str, cls: str, name: str) -> ast.FunctionDef:
    [found] = [
        node
        for klass in ast.parse(source).body
        if isinstance(klass, ast.ClassDef) and klass.name == cls
        for node in klass.body
        if isinstance(node, ast.FunctionDef) and node.name == name
    ]
    return found


@contextlib.contextmanager
def _imported_driver(top: Path, name: str) -> Iterator[type]:
    """The generated driver class, imported from its source directory; forgotten afterwards."""
    names = names_for(name)
    sys.path.insert(0, str(top))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(f"{names.package}.driver")
        yield getattr(module, f"{names.camel}Driver")
    finally:
        sys.path.remove(str(top))
        for loaded in [m for m in sys.modules if m.split(".")[0] == names.package]:
            del sys.modules[loaded]


GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-drivers.md"


def _guide_example() -> tuple[list[str], dict[str, str]]:
    """The worked example's fill-in from docs/writing-drivers.md: its imports, each method's body.

    The test fills the scaffold in with exactly what the guide tells authors to write.
    """
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(r"```python\n# docs-example: fill-in\n(.*?)```", text, re.S)
    assert match, "the guide lost its worked example (docs-example: fill-in)"
    code = match.group(1)
    lines = code.splitlines()
    tree = ast.parse(code)
    imports = [
        ast.get_source_segment(code, node) or ""
        for node in tree.body
        if isinstance(node, ast.Import)
    ]
    [klass] = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    bodies = {
        node.name: textwrap.dedent("\n".join(lines[node.body[0].lineno - 1 : node.end_lineno]))
        for node in klass.body
        if isinstance(node, ast.FunctionDef)
    }
    return imports, bodies


def _fill_in(top: Path, name: str) -> None:
    """Replace each marker comment and its raise with the guide's body; add its imports."""
    names = names_for(name)
    path = top / names.package / "driver.py"
    imports, bodies = _guide_example()
    assert sorted(bodies) == sorted(MARKED_METHODS), "the guide fills in other methods"
    lines = path.read_text().splitlines(keepends=True)
    statements = [_method("".join(lines), f"{names.camel}Driver", m).body[-1] for m in bodies]
    # Bottom up, so that earlier line numbers stay right.
    for method, statement in sorted(
        zip(bodies, statements, strict=True), key=lambda pair: -pair[1].lineno
    ):
        marker = statement.lineno - 2
        assert lines[marker].strip() == f"# FILL IN: {method}"
        body = textwrap.indent(bodies[method].strip("\n"), " " * 8) + "\n"
        lines[marker : statement.end_lineno] = [body]
    future = lines.index("from __future__ import annotations\n")
    lines[future + 1 : future + 1] = ["\n", *(f"{line}\n" for line in imports)]
    path.write_text("".join(lines))


def test_until_its_methods_are_written_the_kit_fails_saying_which_is_not_written(tmp_path: Path):
    name = _unique_name()
    top = _generate(name, tmp_path / "src")
    storage = tmp_path / "storage"
    storage.mkdir()
    declared = "declares_its_metadata_without_io"
    ready = "ready_with_a_reason_when_configured"
    round_trip = "archive_then_restore_gives_back_equal_bytes_and_sha1"
    with _imported_driver(top, name) as driver:
        report = check_driver(
            driver,
            {"location": str(storage)},
            workdir=tmp_path,
            only=[declared, ready, round_trip],
        )
    assert report.outcome(declared) == "passed", str(report)
    assert report.outcome(ready) == "passed", str(report)
    [failed] = [r for r in report.results if r.outcome == "failed"]
    assert failed.name == round_trip
    # Archive first asks whether an object is already under the key (so that none is ever
    # replaced), which is the first unwritten method it meets.
    assert f"{names_for(name).camel}Driver.get() is not written yet" in failed.message


def _uv() -> str | None:
    # As ./run finds it: uv on PATH, else the private copy it installs into .tools/.
    local = REPO / ".tools" / "bin" / "uv"
    return shutil.which("uv") or (str(local) if os.access(local, os.X_OK) else None)


def _clean_env() -> dict[str, str]:
    """This environment without what would steer a child's archive-core, venv or pytest."""
    drop = ("ARCHIVE_CORE_", "PYTEST_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    return env


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_filled_in_it_installs_into_a_fresh_venv_passes_the_kit_and_is_listed(tmp_path: Path):
    uv = _uv()
    if uv is None:
        pytest.skip("uv is neither on PATH nor in .tools/bin (./run installs it there)")
    name = _unique_name()
    names = names_for(name)
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run(uv, "venv", "--quiet", venv, "--python", sys.executable)
    # archive-core built from this checkout as a wheel (not editable), so generating with the
    # installed command also proves the templates ship in the wheel.
    _run(uv, "pip", "install", "--quiet", "--python", python, REPO)
    _run(venv / "bin" / "archive-core", "drivers", "new", name, "--directory", tmp_path)
    top = tmp_path / names.distribution
    _fill_in(top, name)
    _run(uv, "pip", "install", "--quiet", "--python", python, f"{top}[testing]")

    tests = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=top)
    summary = tests.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary

    listed = json.loads(_run(venv / "bin" / "archive-core", "drivers", "--json").stdout)
    [driver] = [d for d in listed if d["name"] == name]
    assert driver["distribution"] == names.distribution
    assert driver["status"] == "loaded", driver["reason"]
    assert driver["capabilities"] == ["archive", "delete", "restore", "verify"]
