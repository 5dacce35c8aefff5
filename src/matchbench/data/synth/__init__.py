"""The mini-world: a deterministic generator of small scenes with known ground truth.

Objects of several shape categories, with colours and textures, placed on varied backgrounds
under known transforms. An *instance* is one textured object (category + colour + texture);
a *view* renders it with a new pose, scale, position and background. Every quantity a
benchmark needs (class, instance, keypoints, box) is known exactly, so the real dataset
parsers can be fed files in their own formats and every metric has a true answer.
"""

from matchbench.data.synth.world import (
    CATEGORIES,
    Instance,
    View,
    make_instance,
    render,
    sample_view,
)

__all__ = ["CATEGORIES", "Instance", "View", "make_instance", "render", "sample_view"]
