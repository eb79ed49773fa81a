"""Recipe checks: is learngene's result a property of the method or of our training recipe?

Each check changes one thing the paper leaves open and that could make inheritance look worse than
it is, and nothing else (same episodes, seeds, fresh front and head, EWC as `learngene`):

- `learngene-genelr0.1` / `learngene-genelr10`: the inherited blocks train at 0.1x / 10x the
  recipe's learning rate (the paper gives one rate for the whole individual model). A too-high rate
  could wash out what was inherited; a too-low one could freeze features that do not fit.
- `learngene-bnreset`: the inherited blocks' BatchNorm running statistics are reset instead of carried
  over from the collective model (γ and β stay inherited). Statistics of the collective network's
  layers can be far from what a fresh front feeds them.

The task the learngene is taken after is Figure 6(a)'s axis (`[experiments.fig6] checkpoints`).
These variants are not part of `--method all`; `make checks` (`--method checks`) runs them on Table 3's episodes.
"""
from __future__ import annotations

import torch

from methods.learngene.method import _S, Learngene
from methods.registry import register


class LearngeneRecipeCheck(Learngene):
    """Learngene with one recipe knob changed (see the module docstring); never stacked."""

    gene_lr_scale: float = 1.0
    reset_gene_bn: bool = False
    in_all = False
    roles = frozenset({"recipe-check"})  # compared with the headline method and the control (results summary)

    def uses_stacking(self) -> bool:
        return False

    def individual_model(self, n_way: int) -> torch.nn.Module:
        model = super().individual_model(n_way)
        if self.reset_gene_bn:
            for m in model.gene.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.reset_running_stats()
        return model

    def optimizer_params(self, model: torch.nn.Module) -> list | None:
        if self.gene_lr_scale == 1.0:
            return None
        gene = {id(p) for p in model.gene.parameters()}
        rest = [p for p in model.parameters() if id(p) not in gene]
        return [{"params": rest}, {"params": list(model.gene.parameters()), "lr": self.s.lr * self.gene_lr_scale}]


@register("learngene-genelr0.1", "Recipe check: learngene with the inherited blocks at 0.1x the learning rate", **_S)
class GeneLrTenth(LearngeneRecipeCheck):
    gene_lr_scale = 0.1


@register("learngene-genelr10", "Recipe check: learngene with the inherited blocks at 10x the learning rate", **_S)
class GeneLrTen(LearngeneRecipeCheck):
    gene_lr_scale = 10.0


@register("learngene-bnreset", "Recipe check: learngene with the inherited BatchNorm running statistics reset", **_S)
class BnReset(LearngeneRecipeCheck):
    reset_gene_bn = True
