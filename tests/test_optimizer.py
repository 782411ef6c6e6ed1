"""space/optimizer.py: the one AdamW parameter grouping (decay on matrices, not on 1-d params, frozen left out)."""

import torch

from space.optimizer import adamw, decay_groups


def _model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))
    model[0].weight.requires_grad_(False)  # frozen: in no group
    return model


def test_every_trainable_parameter_lands_in_one_group_decay_only_on_matrices():
    model = _model()
    decay, no_decay = decay_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [(3, 4)]  # the linear weight; the embedding is frozen
    assert [p.shape for p in no_decay["params"]] == [(4,), (4,), (3,)]  # norm gain and bias, linear bias
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(grouped) == sorted(trainable)


def test_adamw_carries_the_hyperparameters():
    optimizer = adamw(_model(), lr=0.5, weight_decay=0.2, betas=(0.8, 0.9), eps=1e-6)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [(g["lr"], g["betas"], g["eps"], g["weight_decay"]) for g in optimizer.param_groups] == [
        (0.5, (0.8, 0.9), 1e-6, 0.2), (0.5, (0.8, 0.9), 1e-6, 0.0)]
