"""Distribute: how a model's accelerator work divides across cards and
clusters (FWDNXT's numcard and numclus, shared/reference/api-notes.md 1.5).

Two modes. **Batch** (the default): every cluster of every card runs the
whole program on its own images (``images_per_cluster`` of them per run), so
a run takes ``cards x clusters x images_per_cluster`` images and nothing is
decided per layer; code generation gives each image its own activation
region. **Split** (FWDNXT's ``clustersbatchmode``/``nobatch``, option
letter ``C``): one image per run, each layer's work divided over the
clusters of every card; the split pass decides per layer how.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from passes.infra import PassError, register_option
from runtime.hardware import HardwareConfig

MODES = ("batch", "split")
MV_UNITS = 4
"""Images a cluster's vector-MAC units take at once with mvbatch (one each)."""


class PlacementError(PassError):
    """A placement the hardware cannot take (names the argument and the limit)."""


@dataclass(frozen=True)
class Placement:
    """How a model uses the accelerator's cards and clusters."""

    cards: int = 1
    clusters: int = 1
    mode: str = "batch"
    images_per_cluster: int = 1
    mvbatch: bool = False
    """Batch mode: a cluster's images go through each layer together, a
    weight tile loaded once for all of them (its MAC units on different
    images); images_per_cluster a multiple of 4."""

    @property
    def batch(self) -> int:
        """Images per run."""
        return self.cards * self.clusters * self.images_per_cluster if self.mode == "batch" else 1

    def check(self, hw: HardwareConfig) -> None:
        """Every field within what ``hw`` has (the error names the argument)."""
        if self.mode not in MODES:
            raise PlacementError(f"mode={self.mode!r} must be one of {list(MODES)}")
        if not 1 <= self.cards <= hw.cards:
            raise PlacementError(f"numcard={self.cards}: the system has {hw.cards} card(s)")
        if not 1 <= self.clusters <= hw.clusters_per_card:
            raise PlacementError(f"numclus={self.clusters}: a card has {hw.clusters_per_card} clusters")
        if self.images_per_cluster < 1:
            raise PlacementError(f"imgs_per_cluster={self.images_per_cluster} must be at least 1")
        if self.mode == "split" and self.images_per_cluster != 1:
            raise PlacementError(f"imgs_per_cluster={self.images_per_cluster} batches a cluster's images; split "
                                 "mode (clustersbatchmode) runs one image over every cluster")
        if self.mvbatch and (self.mode != "batch" or self.images_per_cluster % MV_UNITS):
            raise PlacementError(f"mvbatch gives each of a cluster's {MV_UNITS} MAC units its own image: it needs "
                                 f"batch mode and imgs_per_cluster a multiple of {MV_UNITS} (got "
                                 f"{self.images_per_cluster}, mode {self.mode!r})")

    def to_dict(self) -> dict[str, Any]:
        return {"numcard": self.cards, "numclus": self.clusters, "mode": self.mode,
                "imgs_per_cluster": self.images_per_cluster, "mvbatch": int(self.mvbatch), "batch": self.batch}


register_option("device.placement", Placement, Placement(),
                "How the accelerator's cards and clusters share the work: batch (each cluster its own images) or "
                "split (each layer divided over the clusters), with numcard, numclus, imgs_per_cluster, mvbatch.")
