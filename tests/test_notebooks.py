"""The notebooks of ``examples/`` run from top to bottom in a real Jupyter kernel (nbclient), on the packaged
SmolLM2: the quick start on the session's smoke run (``pipeline/smoke.yaml``), the own-model notebook on the
packaged text. Their parameters cell is followed by the test's values, as papermill injects them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"


def execute(name: str, folder: Path, **parameters):
    """Run ``examples/<name>`` with ``parameters`` injected after its parameters cell; returns the notebook."""
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(EXAMPLES / name, as_version=4)
    where = next(i for i, cell in enumerate(book.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    book.cells.insert(where + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    client = NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)  # the kernel imports this checkout's fnet_dist; CellExecutionError on a failing cell
    return book


def outputs(book, kind: str) -> list[str]:
    return [str(o.get("data", {}).get(kind, o.get("text", ""))) for cell in book.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if kind in o.get("data", {}) or (kind == "text/plain" and "text" in o)]


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.ipynb")} == {"quickstart.ipynb", "own_model_and_corpus.ipynb"}


@pytest.mark.slow
def test_quickstart_opens_a_run_plots_a_network_inhibits_it_and_scores_a_task(smoke_run, tmp_path):
    book = execute("quickstart.ipynb", tmp_path, RUN=str(smoke_run[0]), LIMIT=4)
    text = "\n".join(outputs(book, "text/plain"))
    assert "news/1 - 3 counterparts" in text  # the smoke run's template with the most counterparts
    assert "normal:" in text and "inhibited:" in text
    assert len(outputs(book, "image/png")) >= 2  # the z-map and its counterparts
    scores = outputs(book, "text/html")[-1]
    assert "normal" in scores and "news/1" in scores and "sentiment_rt" in scores


@pytest.mark.slow
def test_own_model_and_corpus_records_decomposes_edits_and_scores(tmp_path):
    book = execute("own_model_and_corpus.ipynb", tmp_path, TEXTS=6, MAX_TOKENS=32, LIMIT=4)
    text = "\n".join(outputs(book, "text/plain"))
    assert "(8, 30, 576)" in text and "mine/1" in text and "block outputs that changed" in text
    assert len(outputs(book, "image/png")) >= 1
    assert "mine/1" in outputs(book, "text/html")[-1]
