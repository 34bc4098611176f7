"""The tutorial notebooks (English and Portuguese) run top to bottom.

The committed files hold the outputs of a real run (``make_notebooks.py --execute``):
their cells must be current with the generator, outputs aside, and those outputs must
hold figures and no error. The tests execute them again, in memory (the committed files
are never written), with nbclient and ``UNETLAB_FAST=1`` (every training a few real
steps), in a temporary folder so their run folders land there. The ISBI 2012 section
trains too when ../shared/data/isbi2012 is present.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def _maker():
    spec = importlib.util.spec_from_file_location("make_notebooks", EXAMPLES / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("language", ["en", "pt"])
def test_notebook_is_current(language):
    """The committed cells (type and source) are what examples/make_notebooks.py writes.

    Outputs are not compared: the committed files store those of a real run.
    """
    committed = nbformat.read(EXAMPLES / f"tutorial_{language}.ipynb", as_version=4)
    built = _maker().build(language)
    assert [(c.cell_type, c.source) for c in committed.cells] == \
        [(c.cell_type, c.source) for c in built.cells]
    assert committed.metadata == built.metadata  # no kernel version, nothing run-specific
    assert all("execution" not in c.metadata for c in committed.cells)  # no timestamps


def _outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.parametrize("language", ["en", "pt"])
def test_committed_notebook_has_outputs(language):
    """The committed notebook reads complete on the web: figures, printed results, no error."""
    path = EXAMPLES / f"tutorial_{language}.ipynb"
    nb = nbformat.read(path, as_version=4)
    outputs = _outputs(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code), "a code cell without output: run --execute"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # one run, in order
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    stdout = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "fast: False" in stdout  # a real run, as the first cell says
    assert str(ROOT) not in stdout and "/tmp" not in stdout  # nothing of the machine that ran it
    assert path.stat().st_size < 1_500_000


def test_regenerating_keeps_outputs_only_for_the_same_code():
    """make_notebooks.py without --execute: a text edit keeps the stored outputs, a code edit
    drops them all (they would no longer be what the code prints)."""
    maker = _maker()
    stored = nbformat.read(EXAMPLES / "tutorial_en.ipynb", as_version=4)
    text_edit = maker.build("en")
    text_edit.cells[0].source += "\nmore text"
    assert maker.keep_outputs(stored, text_edit)
    assert _outputs(text_edit) == _outputs(stored) and _outputs(text_edit)
    code_edit = maker.build("en")
    next(c for c in code_edit.cells if c.cell_type == "code").source += "\nprint(1)"
    assert not maker.keep_outputs(stored, code_edit)
    assert not _outputs(code_edit)


def _skeleton(source: str) -> list:
    """The tokens of a code cell with the text of its strings blanked out."""
    import io
    import tokenize

    texts = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return [(t.type, "" if t.type in texts else t.string)
            for t in tokenize.generate_tokens(io.StringIO(source).readline)]


def test_notebooks_share_their_code_and_speak_their_language():
    en = _maker().build("en")
    pt = _maker().build("pt")
    code = [[c.source for c in nb.cells if c.cell_type == "code"] for nb in (en, pt)]
    assert len(code[0]) == len(code[1]) >= 8
    # the same code; only the strings (titles, messages) are translated
    assert [_skeleton(c) for c in code[0]] == [_skeleton(c) for c in code[1]]
    assert "<<" not in "".join(code[0] + code[1])
    assert 'set_title("<<' not in "".join(code[1])
    assert '"prediction"' in "".join(code[0]) and '"predição"' in "".join(code[1])
    text = [" ".join(c.source for c in nb.cells if c.cell_type == "markdown") for nb in (en, pt)]
    assert "conexões de salto" in text[1] and "skip connection" in text[0]


@pytest.mark.parametrize("language", ["en", "pt"])
def test_notebook_runs(language, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("UNETLAB_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    path = EXAMPLES / f"tutorial_{language}.ipynb"
    committed = path.read_bytes()
    nb = nbformat.reads(committed.decode("utf-8"), as_version=4)  # a copy, in memory
    for cell in nb.cells:
        if cell.cell_type == "code":  # the stored outputs go: only this run's are checked
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # the native "python3" kernel runs this interpreter (sys.executable)
    assert path.read_bytes() == committed  # the committed notebook is never rewritten

    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "fast: True" in outputs
    same, tiled = {"en": ("same as conv_transpose2d: True", "tiled vs whole image: 100.00%"),
                   "pt": ("igual a conv_transpose2d: True",
                          "blocos vs imagem inteira: 100.00%")}[language]
    assert same in outputs and tiled in outputs
    assert (tmp_path / "runs" / "tutorial_unet" / "checkpoints" / "best").is_dir()
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 5
