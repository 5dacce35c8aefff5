# Input functions and rerun params shared by every rule. No track is named here: a track's
# rules file holds its own.
import re

from matchbench.data import get_family
from matchbench.layout import split_model
from matchbench.reruns import job_params
from matchbench.tracks import get_track


def reads(stage, **opts):
    """A rule's rerun param: the config values its `matchbench <stage>` job reads and the
    version of the code it runs (matchbench.reruns). String options may hold wildcards."""

    def param(wildcards):
        return job_params(CFG, stage, {k: v.format(**wildcards) if isinstance(v, str) else v for k, v in opts.items()})

    return param


def one_of(names):
    """A wildcard constraint matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def has_tables(dataset):
    """Whether a dataset's family writes task tables besides images.parquet (then its track
    prepares it)."""
    return bool(getattr(get_family(CFG["datasets"][dataset]["family"]), "tables", ()))


PLAIN_DATASETS = [d for d in CFG["datasets"] if not has_tables(d)]


def datasets_of(track):
    """The config's datasets whose family the track brings (the track's rules prepare them)."""
    modules = set(get_track(track).families)
    return [d for d, s in CFG["datasets"].items() if type(get_family(s["family"])).__module__ in modules]


def weights_input(wildcards):
    """The weights file a model's job reads, if the DAG makes it (a recipe's checkpoint, or the
    weights rule's download); random init and a user's own file need none."""
    backbone, recipe = split_model(wildcards.model)
    if recipe is None and CFG["backbones"][backbone]["pretrained"] is not True:
        return []
    return L.model_weights(CFG, wildcards.model, wildcards.dataset)


def backbone_weights(wildcards):
    if CFG["backbones"][wildcards.backbone]["pretrained"] is True:
        return L.weights(wildcards.backbone)
    return []
