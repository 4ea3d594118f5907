"""The optional standard FID: its weights file is checked up front, and where torch-fidelity cannot be
imported the evaluation says so instead of reporting a look-alike number."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from latentdiff.errors import UserError
from latentdiff.evaluation.fid import check_inception_weights, fid_unavailable_reason


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="is not a file"):
        check_inception_weights(str(tmp_path / "nope.pth"))


class NotTensors:
    """Any class: unpickling it would run code, which `weights_only=True` refuses."""


def test_file_that_is_more_than_tensors_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": NotTensors()}, path)
    with pytest.raises(UserError, match="not a plain state dict"):
        check_inception_weights(str(path))


def test_state_dict_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="InceptionV3"):
        check_inception_weights(str(path))


def test_plain_inception_state_dict_is_accepted(tmp_path):
    path = tmp_path / "inception.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, path)
    assert check_inception_weights(str(path)) == path


def test_reason_is_given_when_torch_fidelity_is_missing():
    reason = fid_unavailable_reason()
    if importlib.util.find_spec("torch_fidelity") is None:
        assert reason and "torchvision" in reason and "not computed" in reason
    else:
        assert reason is None
