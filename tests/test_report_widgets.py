"""The PDF report's treatment of widget outputs (helpers.report.WidgetOutputsPreprocessor)."""
import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from helpers.report import NOTE, WidgetOutputsPreprocessor

VIEW = "application/vnd.jupyter.widget-view+json"


def widget_output(model_id, text):
    return new_output("display_data", data={VIEW: {"version_major": 2, "version_minor": 0, "model_id": model_id},
                                             "text/plain": text})


def model(name, **state):
    return {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0",
            "model_name": name, "state": state}


def test_progress_bars_are_dropped_and_raw_widget_reprs_replaced():
    bar = widget_output("bar", "fitting q(z | Psi):   0%|          | 0/1000 [00:00<?, ?it/s]")
    stray_bar = widget_output("unknown", "alpha:  45%|####5     | 5/11 [00:01<00:01,  4.2it/s]")
    raw = widget_output("box", "VBox(children=(HBox(children=(FloatSlider(value=0.0, description='z1'…")
    chosen = widget_output("box2", "LatentExplorer2D: sliders\n[interactive widget: open the notebook in JupyterLab to use it]")
    printed = new_output("stream", name="stdout", text="100 images fitted\n")
    nb = new_notebook(cells=[new_code_cell("x", outputs=[bar, stray_bar, printed, raw, chosen])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0, "state": {
        "bar": model("HBoxModel", children=["IPY_MODEL_desc", "IPY_MODEL_progress", "IPY_MODEL_meter"]),
        "desc": model("HTMLModel", value="fitting"), "progress": model("FloatProgressModel", value=1000, max=1000),
        "meter": model("HTMLModel", value="1000/1000"), "box": model("VBoxModel", children=[]),
        "box2": model("VBoxModel", children=[])}}}
    nbformat.validate(nb)
    out, _ = WidgetOutputsPreprocessor().preprocess(nb, {})
    outputs = out.cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data", "display_data"]
    assert outputs[1].data["text/plain"] == NOTE.format(kind="VBox")
    assert outputs[1].data[VIEW]["model_id"] == "box"
    assert outputs[2].data["text/plain"] == chosen.data["text/plain"]


def test_the_first_heading_becomes_the_report_title():
    from nbformat.v4 import new_markdown_cell
    nb = new_notebook(cells=[new_markdown_cell("# 09 · A DCGAN on MNIST\n\nThe intro."), new_code_cell("x")])
    WidgetOutputsPreprocessor().preprocess(nb, {})
    assert nb.metadata["title"] == "09 · A DCGAN on MNIST"
    assert nb.cells[0].source == "The intro."
    untitled = new_notebook(cells=[new_markdown_cell("No heading here.")])
    WidgetOutputsPreprocessor().preprocess(untitled, {})
    assert "title" not in untitled.metadata and untitled.cells[0].source == "No heading here."
