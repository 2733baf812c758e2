"""The PDF report of notebook 01: exported by nbconvert (as `make run` does) and checked."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_data_and_verification_net.ipynb"
HAVE_LATEX = shutil.which("xelatex") and shutil.which("pandoc")


@pytest.mark.skipif(not HAVE_LATEX and not os.environ.get("CI"),
                    reason="PDF export needs texlive-xetex and pandoc (CI installs them)")
def test_notebook_01_exports_to_a_pdf_with_title_and_figures(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    assert HAVE_LATEX, "CI must have xelatex and pandoc: .ci/run installs them"
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "pdf", str(NOTEBOOK),
                    "--output-dir", str(tmp_path)], check=True, capture_output=True, timeout=600)
    pdf = tmp_path / (NOTEBOOK.stem + ".pdf")
    reader = pypdf.PdfReader(str(pdf))
    assert len(reader.pages) >= 4
    text = " ".join(page.extract_text() or "" for page in reader.pages)
    assert "Data and the verification classifier" in text
    assert "MNIST test accuracy" in text
    images = sum(len(page.images) for page in reader.pages)
    assert images >= 5, f"expected the notebook's figures embedded in the PDF, found {images}"
