"""A diverging loss is one line naming the model, the step, the epoch and what to lower (a UserError,
so the CLI exits 2), found although the loss is checked only every CHECK_EVERY steps; an infinite
learning rate is a config error before any training."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest
import torch

from recsys.errors import ConfigError, UserError
from recsys.train.config import OptimConfig
from recsys.train.loop import CHECK_EVERY, Diverged

STEPS_PER_EPOCH = 16  # 4,200 training rows / 256, as the tiny trainer batches them


@dataclass
class PoisonedAt:
    """The tiny data set with the labels of one global training step made NaN."""

    dataset: object
    step: int

    def num_rows(self, split):
        return self.dataset.num_rows(split)

    def batches(self, split, batch_size, *, epoch=0, **kwargs):
        for i, batch in enumerate(self.dataset.batches(split, batch_size, epoch=epoch, **kwargs)):
            if epoch * STEPS_PER_EPOCH + i + 1 == self.step:
                batch = replace(batch, labels=torch.full_like(batch.labels, math.nan))
            yield batch


def test_the_first_non_finite_loss_is_named_with_its_step_and_epoch(trainer, tmp_path) -> None:
    assert trainer.dataset.num_rows("train") // 256 == STEPS_PER_EPOCH
    with pytest.raises(Diverged) as e:
        trainer(tmp_path / "run", epochs=3, data=PoisonedAt(trainer.dataset, 37))
    assert str(e.value) == "dlrm: loss is nan at step 37 (epoch 3); lower dlrm.optim.lr_dense or lr_sparse"
    assert 37 % CHECK_EVERY != 0  # found at the check after it, named by its own step
    assert isinstance(e.value, UserError)


def test_a_huge_learning_rate_diverges_in_one_line(trainer, tmp_path) -> None:
    with pytest.raises(Diverged, match=r"^dlrm: loss is (nan|inf|-inf) at step \d+ \(epoch 1\); lower dlrm\.optim\."):
        trainer(tmp_path / "run", epochs=1, lr_dense=1e30, lr_sparse=1e30)


@pytest.mark.parametrize("key", ["lr_dense", "lr_sparse"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0, 0.0, 3e38])
def test_a_learning_rate_that_is_not_a_finite_positive_number_is_a_config_error(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: must be a finite number in \(0, 1e\+30\]$"):
        OptimConfig(**{key: value})
