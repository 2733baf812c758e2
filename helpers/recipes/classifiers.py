"""The verification net (notebook 01): its recipe, its test metrics, and its stored evaluation,
the real-data rows every sample-quality table is set against."""
from __future__ import annotations


import torch

from ..data import DataMode, MNISTData, split_validation
from ..nets import DigitClassifier
from ..training import EarlyStopping, fit
from ..verification import Verifier, augment_for_verification, classification_loss
from .registry import Trained, evaluation, one_cycle, recipe, smoke_count


@recipe("verification_net")
def _verification_net(device, resume) -> Trained:
    mode = DataMode.MONO_FLOAT_COMPLETE
    x, y = MNISTData(mode).get_full_data_set(training=True)
    train_set, val_set = split_validation(x, y, n_val=5000)
    model = DigitClassifier(width=32).to(device)
    history = fit(model, classification_loss, train_set, val_set, epochs=8, batch_size=128,
                  optimizer=torch.optim.AdamW(model.parameters(), weight_decay=1e-4),
                  scheduler=one_cycle(3e-3), augment=augment_for_verification, early_stopping=EarlyStopping(patience=3),
                  resume_path=resume, desc="verification_net")
    return Trained(model, verification_metrics(Verifier(model)), history.to_dict(), mode.name)


def verification_metrics(verifier: Verifier) -> dict:
    """Test accuracy on mono MNIST and all-three-right accuracy on stacked test images."""
    x, y = MNISTData(DataMode.MONO_FLOAT_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_FLOAT_COMPLETE).get_full_data_set(training=False)
    mono = (verifier.classify(x).labels == y).float().mean().item()
    stacked = (verifier.classify(xs).labels == ys).float().mean().item()
    return {"mnist_test_accuracy": round(mono, 5), "stacked_test_accuracy": round(stacked, 5)}


# --- evaluations of notebooks 02 and 03 ---
# The heavy numbers of notebooks 02 and 03, run once with `python -m helpers evaluate NAME` and
# stored with their settings; the notebooks print them and recompute a live subset that must agree
# within its Monte-Carlo error. `verification_net` stores the real-data ceiling rows of their tables.

SAMPLE_COUNTS = {1: 10_000, 3: 25_600}   # generated images per generator: mono, stacked (the mode-count protocol)
SAMPLE_SEED = 0                          # torch.Generator seed of the stored samples; the notebooks' live draws use 1
REAL_STACKED_SEED = 1                    # the 25,600 real stacked test images (MNISTData seed), as in notebook 01
ANOMALY_SEED = 0                         # generator of the prior samples, posterior samples and ELBO draws
PRIOR_MC_SAMPLES = 10_000                # N of IT3030's prior Monte-Carlo log p(x)
IMPORTANCE_SAMPLES = 16                  # K of the importance-sampled log p(x)
TOP_K = 16                               # anomalies kept for the figures
LIVE_IMAGES = {1: 1000, 3: 300}          # notebooks recompute log p(x) of the first LIVE_IMAGES[channels] test images
LOG_PX_BATCH = 100                       # images per draw of the ELBO and importance estimates (divides LIVE_IMAGES)


@evaluation("verification_net")
def _evaluate_verification_net(net) -> dict:
    """The real-data ceiling rows: the binarised mono test set (tolerance 0.8) and 25,600 binarised
    stacked test images (tolerance 0.5), scored like the generators' samples."""
    from ..metrics import classify_in_chunks, generation_summary
    verifier = Verifier(net)
    x, y = MNISTData(DataMode.MONO_BINARY_COMPLETE).get_full_data_set(training=False)
    xs, ys = MNISTData(DataMode.COLOR_BINARY_COMPLETE, n_test=smoke_count(SAMPLE_COUNTS[3]),
                       seed=REAL_STACKED_SEED).get_full_data_set(training=False)
    mono, stacked = classify_in_chunks(verifier, x), classify_in_chunks(verifier, xs)
    return {"real_mono": {**generation_summary(mono, 0.8), "accuracy": mono.accuracy(y, 0.8),
                          "data": "MNIST test set, binarised (MONO_BINARY_COMPLETE)"},
            "real_stacked": {**generation_summary(stacked, 0.5), "accuracy": stacked.accuracy(ys, 0.5),
                             "data": f"MNISTData(COLOR_BINARY_COMPLETE, n_test={len(xs)}, seed={REAL_STACKED_SEED}) test images"}}

