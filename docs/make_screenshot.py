"""Make docs/images/nimosef_result.png from a real Segment & Track run on the demo cine.

    VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow python docs/make_screenshot.py [--quality standard]

Runs the engine through the module's own job (export -> process -> import), then renders the
slice view with the segmentation overlay and the 3D view with surfaces and glyphs at ES,
offscreen with Slicer's displayable managers (slicer-core).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "NimosefSlicer"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quality", default="standard")
    ap.add_argument("--out", default=str(REPO / "docs" / "images" / "nimosef_result.png"))
    args = ap.parse_args()
    from NimosefSlicerLib import offscreen
    from NimosefSlicerLib.cine import load_cine_file
    from NimosefSlicerLib.context import create_headless_context
    from NimosefSlicerLib.results import import_results
    from NimosefSlicerLib.runner import SegmentTrackOptions
    from NimosefSlicerLib.workflow import SegmentTrackJob

    cine_path = REPO / "tests" / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz"
    ctx = create_headless_context()
    cine = load_cine_file(ctx, cine_path)
    with tempfile.TemporaryDirectory() as work:
        job = SegmentTrackJob(ctx, cine, SegmentTrackOptions(res_factor_z=2, quality=args.quality,
                                                             device="cpu"),
                              sys.executable, str(REPO), Path(work))
        job.start()
        code = job.process.wait(lambda event: None, timeout_s=1800)
        if code != 0:
            raise SystemExit(job.process.error_message())
        results = import_results(ctx, cine, job.out_dir, 2)
        path = offscreen.result_snapshot(ctx, cine, results.sequences["segmentation"], args.out,
                                         int(results.summary["es_frame"]))
    print(path, results.summary["LV_EF_pct"])


if __name__ == "__main__":
    main()
