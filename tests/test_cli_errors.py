"""The command line's mistakes and first steps: a user error is one line on stderr naming the file, option or
node at fault, with exit code 2, before any work; a bug keeps its traceback; ``--version`` and a fast
``--help``. Common mistakes run as a user runs them (a subprocess); every option of every command is checked
in process (typer's CliRunner) with the command bodies replaced, so nothing but the checks runs."""
import functools
import importlib
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import tomli
from typer.testing import CliRunner

import snncompile
from snncompile import cli
from snncompile.cli.errors import USER_ERRORS, user_error_message

ROOT = Path(__file__).resolve().parents[1]
UNWRITABLE = Path("/proc/snncompile-test/out")  # no file can be created under /proc, not even by root


def snncompile_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "snncompile", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                      "COLUMNS": "80"})


def assert_one_line_error(out, *names):
    """Exit code 2, nothing on stdout, and one line on stderr (on an 80-column terminal) naming ``names``."""
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("error: ")
    for name in names:
        assert name in line, line


@pytest.mark.parametrize("args, names", [
    (["simulate", "--split", "foo"], ["'--split'", "'foo' is not one of train, test"]),
    (["simulate", "--batch-size", "0"], ["'--batch-size'", "greater than or equal to 1"]),
    (["simulate", "--granularity", "foo"], ["'--granularity'", "'foo' is not one of per_op, fused, fused_model"]),
    (["simulate", "--limit", "0"], ["'--limit'", "greater than or equal to 1"]),
    (["simulate", "--backend", "nest"], ["'--backend'", "'nest' is not one of ref, lava"]),
    (["run", "--target", "nosuch"], ["'--target'", "no shipped target 'nosuch' (shipped: cmos45, hala-point"]),
    (["run", "--target", "cmos45"], ["'--target'", "cmos45 is an energy-convention, not a chip"]),
    (["run", "--target", "kapoho-point"], ["'--target'", "kapoho-point is a system of loihi2 chips, not a target"]),
    (["compile", "--target", "loihi1", "--max-chips", "hala-point"],
     ["'--max-chips'", "system 'hala-point' is made of 'loihi2' chips, not 'loihi1'"]),
    (["compile", "--max-chips", "many"], ["'--max-chips'", "many: no shipped target 'many'"]),
    (["run", "--lava-timeout", "0"], ["'--lava-timeout'", "0.0 is not more than 0"]),
    (["compile", "--calibration", "0"], ["'--calibration'", "greater than or equal to 1"]),
    (["verify", "--samples", "0"], ["'--samples'", "greater than or equal to 1"]),
    (["verify", "--pipeline", "fast"], ["'--pipeline'", "'fast' is not one of float, loihi"]),
    (["evaluate", "--attention", "sdt"], ["'--attention'", "'sdt' is not one of SDT, STAtten"]),
    (["run", "--nosuch"], ["No such option: --nosuch", "run --help"]),
    (["compiles"], ["No such command 'compiles'", "Did you mean 'compile'"]),
])
def test_a_common_mistake_is_one_line_and_exit_2(args, names):
    assert_one_line_error(snncompile_cli(*args), *names)


def test_an_unwritable_run_folder_is_refused_before_the_job(tmp_path):
    (tmp_path / "file").write_text("a file where a folder should be")
    for out_dir in (UNWRITABLE, tmp_path / "file" / "runs"):
        out = snncompile_cli("run", "--out-dir", out_dir)
        assert_one_line_error(out, "'--out-dir'", str(out_dir))
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


def test_an_output_file_that_cannot_be_written_is_one_line(tmp_path):
    long_name = tmp_path / ("g" * 300 + ".snnir")
    for path, why in [(tmp_path, "is a directory, not a file"), (long_name, "File name too long"),
                      (UNWRITABLE / "g.snnir", "cannot create files in /proc")]:
        assert_one_line_error(snncompile_cli("export", "statten-digits", "-o", path), "'--out'", str(path), why)
    assert list(tmp_path.iterdir()) == []


def test_version_is_the_package_version():
    out = snncompile_cli("--version")
    assert out.returncode == 0 and out.stdout == f"snncompile {snncompile.__version__}\n"
    assert snncompile.__version__ == tomli.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


HELP_PROBE = """
import sys
from snncompile.cli import main
for args in [["--help"], ["--version"]] + [[name, "--help"] for name in sys.argv[1:]]:
    sys.argv = ["snncompile", *args]
    try:
        main()
    except SystemExit as e:
        assert e.code == 0, (args, e.code)
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "lava", "numpy", "nir", "onnx", "h5py"}),
      file=sys.stderr)
"""


def test_help_and_version_import_no_stage():
    commands = [info.name for info in cli.app.registered_commands]
    out = subprocess.run([sys.executable, "-c", HELP_PROBE, *commands], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == "[]"  # none of torch, lava, numpy, nir, onnx, h5py was imported
    assert all(f" {name} " in out.stdout for name in commands)


def test_help_names_every_registered_choice():
    from snncompile.backends.lava.mapping import GRANULARITIES
    from snncompile.backends.protocol import BACKENDS_BY_NAME
    from snncompile.passes import PIPELINES
    for command, names in [("run", GRANULARITIES), ("simulate", GRANULARITIES), ("simulate", BACKENDS_BY_NAME),
                           ("verify", PIPELINES)]:
        text = " ".join(CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"}).stdout.split())
        assert all(name in text for name in names), (command, list(names))


def test_a_bug_keeps_its_traceback():
    script = ("import sys\nfrom snncompile.cli import commands, main\n"
              "def broken():\n    raise ValueError('a bug, not a user error')\n"
              "commands.list_entries = broken\nsys.argv = ['snncompile', 'models']\nmain()\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" in out.stderr and "a bug, not a user error" in out.stderr
    assert "error: " not in out.stderr


def test_user_errors_name_real_exception_classes():
    for qualified in USER_ERRORS:
        module, name = qualified.rsplit(".", 1)
        error = getattr(importlib.import_module(module), name)
        assert issubclass(error, Exception) and f"{error.__module__}.{error.__qualname__}" == qualified


def test_an_os_error_on_a_path_is_a_user_error_naming_it_and_any_other_is_a_bug():
    with pytest.raises(OSError) as caught:
        open(UNWRITABLE, "w")
    assert user_error_message(caught.value) == f"{UNWRITABLE}: No such file or directory"
    assert user_error_message(OSError(5, "Input/output error")) is None
    assert user_error_message(ValueError("unregistered")) is None


# -- every option of every command, with the command bodies replaced ---------------------------------------------

def _options(kinds):
    """(command, option) for each option of each command whose annotation is one of ``kinds``."""
    found = []
    for info in cli.app.registered_commands:
        hints = typing.get_type_hints(info.callback)
        for name, parameter in inspect.signature(info.callback).parameters.items():
            declared = getattr(parameter.default, "param_decls", None)
            if declared is None:
                continue  # an argument
            kind = hints[name]
            kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
            if kind in kinds:
                found.append((info.name, declared[-1] if declared else f"--{name.replace('_', '-')}"))
    return found


REQUIRED = {"train": ["statten-digits"], "export": ["statten-digits", "-o", "g.snnir"], "inspect": ["g.snnir"],
            "report": ["r.report.json"]}  # a command's arguments, so that only the option under test is wrong
ZERO_ALLOWED = {("compile", "--max-chips")}  # 0 chips: every node is reported as a design rule violation
INPUTS = {"--graph", "--data-root"}


@pytest.fixture
def bodies(monkeypatch, tmp_path):
    """The commands with their bodies replaced by a record of the call (run in ``tmp_path``)."""
    called = []
    for info in cli.app.registered_commands:
        def record(*args, _command=info.name, **kwargs):
            called.append(_command)
        monkeypatch.setattr(info, "callback", functools.wraps(info.callback)(record))
    monkeypatch.chdir(tmp_path)
    return called


def invoke(command, *args):
    return CliRunner().invoke(cli.app, [command, *REQUIRED.get(command, []), *map(str, args)],
                              env={"COLUMNS": "80"})


def test_every_numeric_and_output_option_is_found():
    assert len(_options((int, float))) >= 10 and len(_options((Path,))) >= 10


@pytest.mark.parametrize("command, option", _options((int, float)))
def test_every_numeric_option_refuses_a_value_out_of_range_before_the_command(bodies, command, option):
    bad = "-1" if (command, option) in ZERO_ALLOWED else "0"
    refused = invoke(command, option, bad)
    assert refused.exit_code == 2 and bodies == [], refused.output
    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: Invalid value for") and option in line
    assert invoke(command, option, "1").exit_code == 0 and bodies == [command]


@pytest.mark.parametrize("command, option", [c for c in _options((Path,)) if c[1] not in INPUTS])
def test_every_output_option_refuses_a_place_it_cannot_write_before_the_command(bodies, tmp_path, command, option):
    (tmp_path / "file").write_text("a file where a folder should be")
    for path in (UNWRITABLE, tmp_path / "file" / "out", tmp_path / ("o" * 300)):
        refused = invoke(command, option, path)
        assert refused.exit_code == 2 and bodies == [], refused.output
        (line,) = refused.stderr.splitlines()
        assert line.startswith("error: Invalid value for") and option in line and str(path) in line
    assert invoke(command, option, tmp_path / "new" / "out").exit_code == 0 and bodies == [command]
    assert not (tmp_path / "new").exists()  # checked, not created


def test_a_report_that_cannot_be_read_is_one_line(tmp_path):
    broken = tmp_path / "r.report.json"
    broken.write_text(json.dumps({"schema": "other/1"}))
    assert_one_line_error(snncompile_cli("report", broken), str(broken))
