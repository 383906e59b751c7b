"""glf-losses: self-supervised learning losses written once over the array API.

Every objective is an aligning part plus a constraining part (GLF, Si, Wang and Qiang,
arXiv 2508.13596). The functions here take arrays of NumPy, array-api-strict, PyTorch,
JAX or TensorFlow and return a 0-d array of the same framework.
"""

from glf_losses import adc, align, constrain, whitening
from glf_losses._lib import GLFParts
from glf_losses._namespace import get_backend, get_namespace
from glf_losses.adc import ADC, ADCParts, adc_loss, adc_parts
from glf_losses.distributed import data_parallel
from glf_losses.methods import (
    alignment_uniformity_loss,
    alignment_uniformity_parts,
    barlow_twins_loss,
    barlow_twins_parts,
    byol_loss,
    byol_parts,
    dcl_loss,
    dcl_parts,
    dclw_loss,
    dclw_parts,
    moco_enqueue,
    moco_loss,
    moco_parts,
    mocov3_loss,
    mocov3_parts,
    simclr_loss,
    simclr_parts,
    simsiam_loss,
    simsiam_parts,
    swav_loss,
    swav_parts,
    tico_covariance,
    tico_loss,
    tico_parts,
    vicreg_loss,
    vicreg_parts,
    with_adc,
    wmse_loss,
    wmse_parts,
)

__version__ = "0.1.0"

__all__ = [
    "ADC",
    "ADCParts",
    "GLFParts",
    "adc",
    "adc_loss",
    "adc_parts",
    "align",
    "alignment_uniformity_loss",
    "alignment_uniformity_parts",
    "barlow_twins_loss",
    "barlow_twins_parts",
    "byol_loss",
    "byol_parts",
    "constrain",
    "data_parallel",
    "dcl_loss",
    "dcl_parts",
    "dclw_loss",
    "dclw_parts",
    "get_backend",
    "get_namespace",
    "moco_enqueue",
    "moco_loss",
    "moco_parts",
    "mocov3_loss",
    "mocov3_parts",
    "simclr_loss",
    "simclr_parts",
    "simsiam_loss",
    "simsiam_parts",
    "swav_loss",
    "swav_parts",
    "tico_covariance",
    "tico_loss",
    "tico_parts",
    "vicreg_loss",
    "vicreg_parts",
    "whitening",
    "with_adc",
    "wmse_loss",
    "wmse_parts",
]
