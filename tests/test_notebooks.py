"""The tutorial notebooks (English and Portuguese) run top to bottom.

They are executed with nbclient and ``UNETLAB_FAST=1`` (every training a few real
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
    """The committed notebook equals what examples/make_notebooks.py writes."""
    committed = nbformat.read(EXAMPLES / f"tutorial_{language}.ipynb", as_version=4)
    built = _maker().build(language)
    assert [(c.cell_type, c.source) for c in committed.cells] == \
        [(c.cell_type, c.source) for c in built.cells]
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")


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
    nb = nbformat.read(EXAMPLES / f"tutorial_{language}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # the native "python3" kernel runs this interpreter (sys.executable)

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
