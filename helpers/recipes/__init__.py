"""How each shipped checkpoint is trained and evaluated, one module per family:

    registry         train, load_or_train, evaluate, stored_evaluation, the RECIPES and EVALUATIONS tables
    classifiers      the verification net (notebook 01) and the real-data rows of the sample tables
    autoencoders     AEs and VAEs on (stacked)MNIST (notebooks 02, 03) and the flow-prior VAE (08)
    likelihood_vaes  the four decoder likelihoods (04) and the z = 100 VAE (07)
    latent_models    the 2-D AE and VAE (05) and encoder-free inference (06)
    gans             DCGAN, stacked DCGAN, PacGAN2, WGAN-GP (09, 10)
    fid              FID features, test sets, FIDReference, the fid command; SVHN loaders (11)
    svhn             SVHN classifier, SVHN VAEs, SVHN WGAN-GP (08, 11)
    comparison       one table of every model: its rows and stored likelihoods, SVHN sample statistics (11)

Importing the package registers every recipe and evaluation; the public names of the modules are
importable from `helpers.recipes`. A test that changes a module constant patches that module.
"""
from __future__ import annotations

from .registry import (  # noqa: F401
    EVALUATIONS, LIKELIHOOD_EPOCH_CAP, RECIPES, VERIFIER, evaluate, evaluation, evaluations_of,
    likelihood_stopping, load_or_train, load_verifier, one_cycle, recipe, resume_path,
    resumed_seconds, smoke_count, stored_evaluation, train, Trained, value_summary,
)
from .classifiers import (  # noqa: F401
    ANOMALY_SEED, IMPORTANCE_SAMPLES, LIVE_IMAGES, LOG_PX_BATCH, PRIOR_MC_SAMPLES,
    REAL_STACKED_SEED, SAMPLE_COUNTS, SAMPLE_SEED, TOP_K, verification_metrics,
)
from .autoencoders import (  # noqa: F401
    BALANCE_SEEDS, COMPARISON_BATCH, COMPARISON_IS_IMAGES, COMPARISON_K, COMPARISON_LIVE,
    COMPARISON_SEED, FLOW_PRIOR, GENERATIVE, GENERATIVE_EPOCHS, channelwise_balance,
    generative_metrics, mono_binary_splits, prior_comparison_values,
)
from .likelihood_vaes import (  # noqa: F401
    BINARIZATION_SEED, LIKELIHOOD_VAES, Z100_EPOCH_CAP,
)
from .latent_models import (  # noqa: F401
    COMPLETION_METHODS, EF_CHUNK, EF_IMAGES, EF_SEED, EF_DRAWS, EF_K, EF_LIVE, EF_RANDOM_FRACTION, completion_scores,
    encoder_free_gap,
)
from .gans import (  # noqa: F401
    GAN_MONO_SAMPLES, GAN_SAMPLE_SEEDS, GAN_SETTINGS, GAN_STACKED_SAMPLES, fit_gan_recipe, gan_sample_scores,
)
from .fid import (  # noqa: F401
    FID_DATASETS, FID_SAMPLES, FID_SEED, SVHN_CLASSIFIER, fid_against_test, fid_against_test_sets,
    fid_feature_extractor, fid_of_directories, fid_test_images, FIDReference, FIDResult,
    load_svhn_classifier, load_svhn_data, svhn_classifier_net, svhn_sample_fid,
)
from .svhn import (  # noqa: F401
    ACTIVE_KL, MONITOR_SAMPLES, SVHN_HELDOUT_SEED, SVHN_IS_K, SVHN_IS_SEED, SVHN_LATENT, SVHN_SIGMA, SVHN_WIDTH,
    WGAN_GP_SVHN, kl_per_dimension, svhn_heldout_classifier, svhn_heldout_scores, validation_fid_monitor,
)
from . import autoencoders, classifiers, comparison, fid, gans, latent_models, likelihood_vaes, registry, svhn  # noqa: F401
