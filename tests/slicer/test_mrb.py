"""A scene with a cine, a synchronised segmentation sequence, arrows and a volume table is
saved to .mrb and read back into a fresh scene with nothing lost."""

from __future__ import annotations

import numpy as np
from NimosefSlicerLib import curves, scenarios
from NimosefSlicerLib.context import create_headless_context


def test_mrb_round_trip_of_expert_scene(ctx, gt_scene, tmp_path):
    labels, affine = gt_scene["labels"], gt_scene["affine"]
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    volumes = {c: [] for c in curves.CURVE_COLUMNS}
    for t in range(2):
        volumes["frame"].append(t)
        volumes["time"].append(t / 2)
        volumes["time_ms"].append(t * 300.0)
        for label, name in ((1, "LV_mL"), (2, "MYO_mL"), (3, "RV_mL")):
            volumes[name].append(float((labels[..., t] == label).sum() * voxel_ml))
    curves.add_volume_table(ctx.scene, volumes, "expert volumes")
    browser = gt_scene["cine"].browser
    ctx2, browser2 = scenarios.check_mrb_roundtrip(ctx, browser, tmp_path / "scene.mrb",
                                                   create_headless_context)
    described = scenarios.describe_scene(ctx2.scene, browser2)
    seg = described["sequences"]["GT"]["frames"]
    assert [f[1]["voxels"]["LV"] for f in seg] == [int((labels[..., t] == 1).sum())
                                                  for t in range(2)]
    assert described["sequences"]["GT arrows"]["frames"][1][1]["points"] > 0
    assert described["tables"]["expert volumes"][0]["LV_mL"][0] > 0
