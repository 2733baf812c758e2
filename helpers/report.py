"""What a notebook's ipywidgets outputs become in the PDF report (`make run`).

A widget output carries the widget view MIME type, which LaTeX cannot show, and a text/plain
fallback, which nbconvert prints instead: for a raw ipywidgets widget its repr
("VBox(children=(HBox(...") and for a tqdm bar the text of the bar when it was first displayed
("fitting:   0%|   | 0/1000 [00:00<?, ?it/s]"), however far it got. `WidgetOutputsPreprocessor`
drops progress bars and gives any other widget whose fallback is a raw repr a one-line note; a
fallback that a widget chose itself (the explorers of helpers/widgets.py) is kept. The view MIME
type is left in place. The notebook's first heading ("# 09 · A DCGAN ...") becomes the report's
title (nbconvert would use the file name) and leaves the body, so it is not also numbered as
section 1. Only stdlib and nbconvert are imported, so the export starts fast.

    python -m jupyter nbconvert --to pdf \
        --PDFExporter.preprocessors=helpers.report.WidgetOutputsPreprocessor NOTEBOOK
"""
from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"
PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}
# the end of a tqdm meter: "[00:03<00:10, 9.5it/s]", "[1:02:03, 2.1s/it]", "[00:00<?, ?it/s]"
TQDM_METER = re.compile(r"\[(?:\d+:)?\d+:\d\d(?:<[^\],]*)?,[^\]]*\]\s*$")
RAW_REPR = re.compile(r"^[A-Za-z_][\w.]*\(")     # "VBox(children=...", "Button(description=..."
NOTE = "[interactive widget ({kind}): open the notebook in JupyterLab to use it]"


def _text(data) -> str:
    text = data.get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)


class WidgetOutputsPreprocessor(Preprocessor):
    """Drop progress-bar widget outputs; replace a widget's raw-repr text/plain by a short note."""

    def preprocess(self, nb, resources):
        self.take_title(nb)
        state = nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {})
        self._models = state if isinstance(state, dict) else {}
        return super().preprocess(nb, resources)

    @staticmethod
    def take_title(nb) -> None:
        """Move the first markdown cell's leading "# " heading into nb.metadata["title"]."""
        first = next((c for c in nb.cells if c.get("cell_type") == "markdown"), None)
        if first is None:
            return
        source = "".join(first.source) if isinstance(first.source, list) else first.source
        lines = source.splitlines()
        if lines and lines[0].startswith("# "):
            nb.metadata["title"] = lines[0][2:].strip()
            first.source = "\n".join(lines[1:]).lstrip("\n")

    def _model(self, reference):
        model_id = str(reference or "").removeprefix("IPY_MODEL_")
        model = self._models.get(model_id)
        return model if isinstance(model, dict) else {}

    def is_progress_bar(self, data) -> bool:
        """A tqdm bar: by its saved widget state (a box holding a progress widget), else by its text."""
        model = self._model(data[VIEW].get("model_id") if isinstance(data[VIEW], dict) else None)
        children = model.get("state", {}).get("children", []) if model else []
        if any(self._model(child).get("model_name") in PROGRESS_MODELS for child in children):
            return True
        if model.get("model_name") in PROGRESS_MODELS:
            return True
        return bool(TQDM_METER.search(_text(data).strip()))

    def kind(self, data) -> str:
        """The widget's class as a reader would name it: "VBox", else from the text, else "widget"."""
        model = self._model(data[VIEW].get("model_id") if isinstance(data[VIEW], dict) else None)
        name = model.get("model_name", "")
        if name.endswith("Model"):
            return name[:-len("Model")]
        match = RAW_REPR.match(_text(data))
        return match.group(0)[:-1] if match else "widget"

    def preprocess_cell(self, cell, resources, index):
        if cell.get("cell_type") != "code":
            return cell, resources
        outputs = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if VIEW in data:
                if self.is_progress_bar(data):
                    continue
                text = _text(data).strip()
                if not text or RAW_REPR.match(text):
                    data["text/plain"] = NOTE.format(kind=self.kind(data))
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources
