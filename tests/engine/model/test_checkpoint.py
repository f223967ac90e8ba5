"""Checkpoints carry the whole model and are written atomically."""

import pytest
import torch

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.model.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    prior_id,
    save_checkpoint,
)
from nimosef_engine.model.network import ModelConfig, NimosefNet


def test_round_trip_rebuilds_the_same_network(tmp_path):
    cfg = ModelConfig(width=32, depth=3, code_dim=16)
    net = NimosefNet(cfg)
    save_checkpoint(tmp_path / "c.pt", {"model_state": net.state_dict(),
                                        "model_config": cfg.to_dict()})
    ck = load_checkpoint(tmp_path / "c.pt")
    assert ck["label_names"] == {0: "background", 1: "LV", 2: "MYO", 3: "RV"}
    assert "engine_version" in ck
    net2 = model_from_checkpoint(ck)
    x = torch.rand(8, 3)
    t = torch.zeros(8, 1)
    code = torch.randn(16)
    torch.testing.assert_close(net(x, t, code).seg_logits, net2(x, t, code).seg_logits)
    assert prior_id(ck) == prior_id(load_checkpoint(tmp_path / "c.pt"))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_bad_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(NimosefInputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NimosefInputError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(NimosefInputError, match="not a NIMOSEF checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
