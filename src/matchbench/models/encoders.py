"""Encoders: one interface for every backbone, whatever library built it.

An :class:`Encoder` maps a normalised image batch to global features (``encode_image``), to a
dense map of one block (``dense``), names the blocks a recipe may unfreeze
(``trainable_blocks``), and, where the model has a text tower (open_clip), tokenizes and encodes
text (``tokenize``, ``encode_text``). This module is the one place that knows how timm and
open_clip lay out their networks; the stages and the tracks only call these methods.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from matchbench.errors import MatchbenchError

Norm = tuple[float, float, float]
Blocks = list[tuple[str, nn.Module]]


class OptionError(MatchbenchError):
    """A value passed to an encoder method does not fit the architecture.

    ``option`` names the argument (``layer``, ``unfreeze``, ``resolution``) and the message
    starts with it, so a caller that read the value from its config can prefix the config
    section (``tracks.<track>.features.``) without this module naming any track.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclass(eq=False)
class Encoder:
    """A network and how to feed it: ``module`` maps a normalised batch (B, 3, H, W) to (B, dim).

    ``name`` is the backbone's name in the config (for messages), ``arch`` its architecture.
    The base class is image-only; :class:`OpenClipEncoder` adds the text tower.
    """

    module: nn.Module
    dim: int
    image_size: int
    mean: Norm
    std: Norm
    name: str = "backbone"
    arch: str = ""

    source = "timm"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)

    # ----------------------------------------------------------------------------- images

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Global features (B, dim) of a normalised batch; not L2-normalised."""
        return self.module(x)

    # ----------------------------------------------------------------------------- text

    @property
    def has_text(self) -> bool:
        """Whether the model has a text tower (and a tokenizer for it)."""
        return False

    def _no_text(self) -> MatchbenchError:
        return MatchbenchError(
            f"backbone {self.name!r} ({self.source} {self.arch}) is an image-only model: it has "
            "no text tower to tokenize or encode text; use an open_clip backbone for text"
        )

    @property
    def context_length(self) -> int:
        """Tokens per text (the tokenizer pads or truncates to it)."""
        raise self._no_text()

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids (N, context_length) of ``texts``, truncated to the context."""
        raise self._no_text()

    def encode_text(
        self, tokens: torch.Tensor, embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Global text features (N, dim) of tokenized texts; not L2-normalised."""
        raise self._no_text()

    # ----------------------------------------------------------------------------- dense maps

    def set_resolution(self, resolution: int) -> None:
        """Let the network take ``resolution``² inputs (a ViT's position embeddings are
        resampled, as timm does); a ConvNet takes any size as it is."""
        module = self.module
        if hasattr(module, "patch_embed") and hasattr(module, "set_input_size"):
            grid = getattr(module.patch_embed, "img_size", None)
            if grid is not None and tuple(grid) != (resolution, resolution):
                module.set_input_size(img_size=(resolution, resolution))

    def dense(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """The output of block ``layer`` (-1 = last, after the final norm for ViTs) as (B, C, h, w).

        ``x`` is a normalised batch. Prefix (class, register) tokens are dropped. Not
        L2-normalised: matching and losses normalise along C.
        """
        module = self.module
        if not hasattr(module, "forward_intermediates"):
            raise MatchbenchError(
                f"backbone {self.name!r} ({type(module).__name__}) has no forward_intermediates: "
                "it cannot give a dense map"
            )
        kwargs: dict[str, Any] = {"indices": [layer], "intermediates_only": True}
        params = inspect.signature(module.forward_intermediates).parameters
        if "norm" in params:
            kwargs["norm"] = True
        if "output_fmt" in params:
            kwargs["output_fmt"] = "NCHW"
        with self._layer_checked(layer):
            return module.forward_intermediates(x, **kwargs)[0]

    @contextmanager
    def _layer_checked(self, layer: int) -> Iterator[None]:
        """timm and open_clip assert a feature index in range (``feature_take_indices``:
        "feature index ... is out of range"): an :class:`OptionError`. Any other failure of
        the forward pass is not the option's and propagates as it is."""
        try:
            yield
        except (AssertionError, IndexError) as e:
            if "out of range" not in str(e):
                raise
            raise OptionError("layer", f"{layer} is out of range for {self.name!r} ({e})") from None

    # ----------------------------------------------------------------------------- fine-tuning

    def _no_blocks(self) -> MatchbenchError:
        return MatchbenchError(
            f"backbone {self.name!r} ({type(self.module).__name__}) has no blocks to unfreeze: "
            "only the last blocks of a timm ViT (blocks), an open_clip visual transformer "
            "(resblocks) or a timm ConvNet with stages can be trained, and this architecture "
            "has none of them"
        )

    def trainable_blocks(self, unfreeze: int, layer: int) -> Blocks:
        """The ``unfreeze`` blocks that end at the dense map's block ``layer``, and what follows.

        timm ViTs: ``blocks`` + ``norm`` (the norm is applied to the dense map). timm ConvNets
        with ``stages``: ``layer`` indexes ``feature_info`` as ``forward_intermediates`` does
        (with the stem in it for some families), and a feature taken after the stages (a
        ``final_conv``) trains that too.
        """
        module = self.module
        if hasattr(module, "patch_embed") and hasattr(module, "blocks"):
            names = [f"blocks.{i}" for i in range(len(module.blocks))]
            after = [("norm", module.norm)] if hasattr(module, "norm") else []
            return self._select(unfreeze, layer, "blocks", module.blocks, names, after)
        if hasattr(module, "stages"):
            info = getattr(module, "feature_info", None) or []
            names = [f["module"] for f in info] or [
                f"stages.{i}" for i in range(len(module.stages))
            ]
            return self._select(unfreeze, layer, "stages", module.stages, names, [])
        raise self._no_blocks()

    def _select(
        self,
        unfreeze: int,
        layer: int,
        prefix: str,
        blocks: nn.Module,
        names: list[str],
        after: Blocks,
    ) -> Blocks:
        """The last ``unfreeze`` of ``blocks`` up to feature level ``layer`` of ``names``."""
        name = self.name
        if not -len(names) <= layer < len(names):
            raise OptionError(
                "layer",
                f"{layer} is out of range for {name!r} ({len(names)} feature levels: "
                f"-{len(names)} ... {len(names) - 1})",
            )
        at = names[layer]
        if at.startswith(f"{prefix}."):
            end = int(at[len(prefix) + 1 :].split(".")[0]) + 1  # the map is block end - 1's output
        elif layer % len(names) == len(names) - 1:  # a module after the last stage (final_conv)
            end, after = len(blocks), [(at, self.module.get_submodule(at))]
        else:
            raise OptionError(
                "layer",
                f"{layer} is {at!r} of {name!r}, before any trainable block; take the dense map "
                "at a later stage",
            )
        if unfreeze > end:
            raise OptionError(
                "unfreeze",
                f"{unfreeze} blocks asked, but {name!r} has {end} up to the dense map's block "
                f"(layer {layer})",
            )
        return [(f"{prefix}.{i}", blocks[i]) for i in range(end - unfreeze, end)] + after


@dataclass(eq=False)
class OpenClipEncoder(Encoder):
    """A whole open_clip model (``CLIP``, ``CustomTextCLIP``, ``CoCa``): image and text towers.

    Features are ``model.encode_image`` / ``model.encode_text`` without their L2-normalisation
    (the feature store normalises). The tokenizer is open_clip's for the architecture
    (``open_clip.get_tokenizer``), built on first use. ``text_unavailable`` says why a model
    loaded from an image-only checkpoint has no usable text tower.
    """

    text_unavailable: str | None = None
    _tokenizer: Any = field(default=None, repr=False)

    source = "open_clip"

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(x, normalize=False)

    @property
    def has_text(self) -> bool:
        return self.text_unavailable is None

    def _check_text(self) -> None:
        if self.text_unavailable is not None:
            raise MatchbenchError(
                f"backbone {self.name!r} (open_clip {self.arch}) has no usable text tower: "
                f"{self.text_unavailable}"
            )

    @property
    def context_length(self) -> int:
        self._check_text()
        return int(self.module.context_length)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        self._check_text()
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.arch, context_length=self.context_length)
        return self._tokenizer(list(texts))

    def encode_text(
        self, tokens: torch.Tensor, embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Global text features (N, dim) of tokenized texts; not L2-normalised.

        ``embeddings`` (N, L, width), when given, replace the token embeddings that ``tokens``
        would look up (a pseudo-word's vector in place of a placeholder token); ``tokens``
        still say where each text ends (the pooled position). Needs the built-in text
        transformer."""
        self._check_text()
        if embeddings is None and not self.text_bidirectional:
            return self.module.encode_text(tokens, normalize=False)
        from open_clip.transformer import text_global_pool

        module = self.module
        x = text_global_pool(
            self.text_tokens(tokens, embeddings),
            tokens,
            module.text_pool_type,
            eos_token_id=getattr(module, "text_eos_id", None),
        )
        proj = module.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """The input embeddings (N, L, width) the text transformer looks up for ``tokens``."""
        return self._builtin_text().token_embedding(tokens)

    @property
    def text_width(self) -> int:
        """The width of the text transformer's token embeddings."""
        return int(self._builtin_text().token_embedding.embedding_dim)

    # A built-in open_clip text transformer (``CLIP``: token_embedding, transformer, ln_final at
    # the top level) can run causal (as trained by CLIP) or bidirectional. open_clip's
    # ``CLIP.encode_text`` with ``attn_mask`` None attends to the padding after the end-of-text
    # token, whose feature it pools (``text_global_pool`` argmax); ``text_tokens`` masks
    # padding as keys instead, so a text's features do not depend on the padding.

    def _builtin_text(self) -> nn.Module:
        self._check_text()
        if not hasattr(self.module, "token_embedding"):
            raise MatchbenchError(
                f"backbone {self.name!r} ({type(self.module).__name__}): only open_clip's "
                "built-in text transformer gives token outputs and bidirectional attention"
            )
        return self.module

    @property
    def text_bidirectional(self) -> bool:
        """Whether the text transformer attends both ways (no causal mask)."""
        module = self.module
        return hasattr(module, "token_embedding") and getattr(module, "attn_mask", 0) is None

    def set_text_bidirectional(self, bidirectional: bool) -> None:
        """Drop (True) or restore (False) the causal mask of the text transformer."""
        module = self._builtin_text()
        if bidirectional:
            module.attn_mask = None
            return
        n = module.positional_embedding.shape[0]
        mask = torch.full((n, n), float("-inf"), device=module.positional_embedding.device)
        module.attn_mask = mask.triu_(1)

    def text_tokens(
        self, tokens: torch.Tensor, embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-token outputs (N, L, width) of the text transformer, after ``ln_final``
        (``embeddings``: as in :meth:`encode_text`)."""
        module = self._builtin_text()
        cast = module.transformer.get_cast_dtype()
        if embeddings is None:
            embeddings = module.token_embedding(tokens)
        elif embeddings.shape != (*tokens.shape, module.token_embedding.embedding_dim):
            raise MatchbenchError(
                f"backbone {self.name!r}: token embeddings of shape {tuple(embeddings.shape)} for "
                f"tokens of shape {tuple(tokens.shape)}"
            )
        # Tokens may stop short of the context (cut after the longest text's end-of-text
        # token): the causal mask never lets a kept position see the cut ones, and the
        # bidirectional one masks them as padding, so the outputs are those of the full row.
        length = tokens.shape[1]
        x = embeddings.to(cast) + module.positional_embedding[:length].to(cast)
        mask = module.attn_mask
        if mask is not None:
            mask = mask[:length, :length]
        else:  # bidirectional: keys after the end-of-text token are padding
            n, length = tokens.shape
            pad = torch.arange(length, device=tokens.device)[None, :] > tokens.argmax(-1)[:, None]
            mask = torch.zeros(n, length, length, dtype=x.dtype, device=x.device)
            mask.masked_fill_(pad[:, None, :], float("-inf"))
            heads = module.transformer.resblocks[0].attn.num_heads
            mask = mask.repeat_interleave(heads, 0)
        return module.ln_final(module.transformer(x, attn_mask=mask))

    def set_resolution(self, resolution: int) -> None:
        native = getattr(self.module.visual, "image_size", None)
        if native is not None and tuple(native) != (resolution, resolution):
            raise OptionError(
                "resolution",
                f"{resolution}, but open_clip visual towers run at their native size "
                f"{tuple(native)}; use {native[0]} for backbone {self.name!r}",
            )

    def dense(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        visual = self.module.visual
        if not hasattr(visual, "forward_intermediates"):
            raise MatchbenchError(
                f"backbone {self.name!r} ({type(visual).__name__}) has no forward_intermediates: "
                "it cannot give a dense map"
            )
        with self._layer_checked(layer):
            out = visual.forward_intermediates(
                x, indices=[layer], intermediates_only=True, normalize_intermediates=True
            )
        return out["image_intermediates"][0]

    def trainable_blocks(self, unfreeze: int, layer: int) -> Blocks:
        """open_clip: ``visual.transformer.resblocks`` + ``visual.ln_post`` (applied to the map)."""
        visual = self.module.visual
        if not hasattr(getattr(visual, "transformer", None), "resblocks"):
            raise self._no_blocks()
        prefix, blocks = "visual.transformer.resblocks", visual.transformer.resblocks
        names = [f"{prefix}.{i}" for i in range(len(blocks))]
        after = [("visual.ln_post", visual.ln_post)] if hasattr(visual, "ln_post") else []
        return self._select(unfreeze, layer, prefix, blocks, names, after)
