"""``i2i-unlearn reproduce``: pick notebooks, run them with papermill, keep going past a failure."""
import os
import re

import nbformat
import pandas as pd
import pytest

from i2i_unlearn import reproduce
from i2i_unlearn.cli import main
from i2i_unlearn.experiments import CACHE_ENV


def _notebook(path, parameters: str, body: str):
    """A notebook with a ``parameters`` cell and one code cell."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def folder(tmp_path):
    """Three notebooks: one that prints its parameters and cache, one that fails, one idle."""
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_square.ipynb", 'scale = "tiny"\nn = 3',
              'import os\nprint("square", n * n, scale, os.environ["I2I_UNLEARN_CACHE"])')
    _notebook(d / "02_broken.ipynb", 'scale = "tiny"',
              'print("before the error")\nraise ValueError("alpha: expected >= 0, got -1")')
    _notebook(d / "03b_idle.ipynb", 'scale = "tiny"', "pass")
    return d


def test_notebooks_are_picked_by_number_or_name_in_book_order(folder):
    stems = lambda names: [nb.stem for nb in reproduce.select(names, folder)]  # noqa: E731
    assert stems(None) == ["01_square", "02_broken", "03b_idle"]
    assert stems(["03b", "01_square.ipynb"]) == ["01_square", "03b_idle"]
    assert stems(["02_broken", "02"]) == ["02_broken"]
    with pytest.raises(ValueError, match=r"notebooks: no notebook '04'; expected one of 01_square"):
        reproduce.select(["04"], folder)
    with pytest.raises(FileNotFoundError, match="--notebooks-dir"):
        reproduce.select(None, folder / "missing")


def test_parameters_are_python_literals_or_strings():
    assert reproduce.parse_overrides(["steps=50", "seeds=[0, 1]", "model=mae-mnist",
                                      "alpha = 0.5"]) == {
        "steps": 50, "seeds": [0, 1], "model": "mae-mnist", "alpha": 0.5}
    with pytest.raises(ValueError, match="parameter: expected NAME=VALUE, got 'steps'"):
        reproduce.parse_overrides(["steps"])


def test_a_failing_notebook_keeps_its_traceback_and_the_others_still_run(folder, tmp_path,
                                                                          monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    out = tmp_path / "out"
    summary = reproduce.reproduce(None, "tiny", out, {"n": 7}, folder=folder, timeout=120,
                                  progress=False)
    assert list(summary["notebook"]) == ["01_square", "02_broken", "03b_idle"]
    assert list(summary["status"]) == ["ok", "failed", "ok"]
    assert "alpha: expected >= 0, got -1" in summary.loc[1, "error"]
    assert pd.read_csv(out / "summary.csv")["status"].tolist() == ["ok", "failed", "ok"]

    text = (out / "01_square.ipynb").read_text()  # the override reached the notebook that has n
    assert "square 49 tiny" in text and str((out / "cache" / "tiny").resolve()) in text
    broken = nbformat.read(out / "02_broken.ipynb", as_version=4)
    outputs = [o for c in broken.cells for o in c.get("outputs", [])]
    assert any(o.get("output_type") == "error" for o in outputs)  # the traceback is kept
    assert any("before the error" in o.get("text", "") for o in outputs)
    square = nbformat.read(out / "01_square.ipynb", as_version=4)
    injected = [c for c in square.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]  # the page shows a banner
    assert CACHE_ENV not in os.environ  # the run's cache setting does not leak


def test_a_parameter_no_selected_notebook_has_is_refused_before_any_work(folder, tmp_path):
    with pytest.raises(ValueError, match="parameters: no selected notebook has alphas"):
        reproduce.reproduce(["01"], "tiny", tmp_path / "out", {"alphas": [1.0]}, folder=folder)
    assert not (tmp_path / "out").exists()


def test_cli_reports_the_run_and_fails_when_a_notebook_failed(folder, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    args = ["reproduce", "--notebooks-dir", str(folder), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(args + ["01", "-p", "n=2"]) == 0
    assert "1 of 1 notebooks ran" in capsys.readouterr().out
    assert main(args + ["01", "02"]) == 1
    assert "1 of 2 notebooks ran" in capsys.readouterr().out
    assert main(args + ["9"]) == 2
    assert "NOTEBOOK: no notebook '9'" in capsys.readouterr().err
    assert main(args + ["01", "-p", "n"]) == 2
    assert "--parameter: expected NAME=VALUE" in capsys.readouterr().err


def test_the_book_notebooks_are_found_and_every_one_has_a_plan():
    every = reproduce.notebooks()
    assert {nb.stem for nb in every} >= {"00_quickstart", "02_table1_imagenet", "09_audit"}
    for nb in every:
        assert reproduce.parameters_for(nb, "tiny") == {}
        paper = reproduce.parameters_for(nb, "paper")
        assert paper.get("scale") == "paper" or nb.stem in reproduce.TINY_ONLY
    with pytest.raises(ValueError, match="scale: expected 'tiny' or 'paper', got 'huge'"):
        reproduce.parameters_for(every[0], "huge")


def test_documented_reproduce_commands_name_real_notebooks_and_parameters():
    """Every ``i2i-unlearn reproduce`` line in the README and the book picks notebooks that exist
    and passes only ``-p`` parameters one of them has (the command refuses others)."""
    import re
    import shlex
    from pathlib import Path

    import papermill

    root = Path(__file__).resolve().parents[1]
    lines = [line for doc in [root / "README.md", *sorted((root / "book").glob("*.md"))]
             for line in doc.read_text().splitlines() if line.startswith("i2i-unlearn reproduce")]
    assert len(lines) >= 3, lines
    for line in lines:
        words = shlex.split(re.sub(r"[\[\]](?=[ -]|$)", " ", line.split("#")[0]))[2:]
        names = [w for w in words if re.fullmatch(r"\d\d\w*", w)]
        chosen = reproduce.select(names, root / "notebooks")
        known = set().union(*(papermill.inspect_notebook(str(nb)) for nb in chosen))
        passed = [words[i + 1].split("=")[0] for i, w in enumerate(words)
                  if w in ("-p", "--parameter")]
        assert set(passed) <= known, (line, set(passed) - known)


def test_pages_run_side_by_side_each_after_the_pages_it_reuses(folder, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(reproduce, "NEEDS", {"03b_idle": ("01_square",)})
    nbs = reproduce.select(None, folder)
    _notebook(folder / "01_square.ipynb", "n = 3",  # slow enough that 03b would start first
              "import os, time\ntime.sleep(3)\nprint('ended', time.time(), 'threads', "
              "os.environ['OMP_NUM_THREADS'])")
    _notebook(folder / "03b_idle.ipynb", "n = 0", "import time\nprint('started', time.time())")
    heard = []
    rows = reproduce.run_notebooks({nb: {} for nb in nbs}, tmp_path / "out", workers=2,
                                   timeout=120, log=heard.append)
    assert [r["notebook"] for r in rows] == ["01_square", "02_broken", "03b_idle"]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "alpha: expected >= 0, got -1" in rows[1]["error"]
    text = lambda stem: (tmp_path / "out" / f"{stem}.ipynb").read_text()  # noqa: E731
    ended = float(re.search(r"ended (\d+\.\d+)", text("01_square")).group(1))
    started = float(re.search(r"started (\d+\.\d+)", text("03b_idle")).group(1))
    assert started > ended  # it waited for the page it reuses
    assert f"threads {max(1, (os.cpu_count() or 1) // 2)}" in text("01_square")
    assert any(h.startswith("02_broken: failed") for h in heard)


def test_after_a_failure_with_stop_on_failure_no_new_page_starts(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "NEEDS", {"03b_idle": ("02_broken",)})
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # passed on to the workers' kernels
    nbs = reproduce.select(None, folder)
    rows = reproduce.run_notebooks({nb: {} for nb in nbs}, tmp_path / "out", workers=2,
                                   timeout=120, stop_on_failure=True)
    assert [r["status"] for r in rows] == ["ok", "failed", "skipped"]
    assert not (tmp_path / "out" / "03b_idle.ipynb").exists()
    with pytest.raises(ValueError, match="workers: expected at least 1, got 0"):
        reproduce.run_notebooks({nb: {} for nb in nbs}, tmp_path / "o2", workers=0)
