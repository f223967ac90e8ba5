"""Make docs/images/nimosef_result.png, the catalog screenshot, from a real Segment & Track run
on the demo cine.

    VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow python docs/make_screenshot.py \
        [--quality standard] [--output-dir KEPT_SEGMENT_TRACK_OUTPUT]

Runs the engine through the module's own job (export -> process -> stepwise import), or
imports an existing segment-track output folder of the demo cine, then draws the result as a
user sees it in Slicer's *Four-Up Plot* layout: the module panel and the sequence toolbar
(drawn text, with the run's values), the short-axis slice with the segmentation overlay, the
3D view with surfaces and arrows, a long-axis reformat and the volume chart, at end-systole.
The views are rendered offscreen by Slicer's own displayable managers (slicer-core) and the
chart by VTK's chart from the module's table node: a composed image, not a capture of the
Qt application (which cannot run here).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "NimosefSlicer"))
DEMO = REPO / "tests" / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz"


def panel_lines(cine_name: str, options, summary: dict) -> list[str]:
    """What the module panel shows after the run (NimosefSlicer.ui), with the run's values."""
    return [
        "# NIMOSEF",
        "",
        "# Input cine",
        f"Cine: {cine_name}",
        "",
        "# Options",
        "Prior: (bundled ACDC prior)",
        f"Device: {options.device}    Quality: {options.quality}",
        f"z resolution: {options.res_factor_z}",
        f"[{'x' if options.refine else ' '}] Refine labels with the image",
        "",
        "[ Segment & Track ]",
        "Done.",
        "",
        "# Results",
        f"LV EDV: {summary['LV_EDV_mL']:.1f} mL",
        f"LV ESV: {summary['LV_ESV_mL']:.1f} mL",
        f"LV EF: {summary['LV_EF_pct']:.1f} %",
        f"Myocardial mass: {summary['MYO_mass_g']:.1f} g",
        "[ Export volume curves to CSV... ]",
        "Research software, not a medical device.",
        "",
        "> Log",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", default="standard")
    ap.add_argument("--output-dir", help="an existing segment-track output of the demo cine "
                                         "(z factor 2) to import instead of running the engine")
    ap.add_argument("--out", default=str(REPO / "docs" / "images" / "nimosef_result.png"))
    args = ap.parse_args()
    from NimosefSlicerLib import offscreen
    from NimosefSlicerLib.cine import load_cine_file
    from NimosefSlicerLib.context import create_headless_context
    from NimosefSlicerLib.results import import_results
    from NimosefSlicerLib.runner import SegmentTrackOptions
    from NimosefSlicerLib.workflow import SegmentTrackJob

    ctx = create_headless_context()
    cine = load_cine_file(ctx, DEMO)
    options = SegmentTrackOptions(res_factor_z=2, quality=args.quality, device="cpu")
    with tempfile.TemporaryDirectory() as work:
        if args.output_dir:
            results = import_results(ctx, cine, Path(args.output_dir), 2)
        else:
            job = SegmentTrackJob(ctx, cine, options, sys.executable, str(REPO), Path(work))
            job.start()
            if job.process.wait(timeout_s=1800) != 0:
                raise SystemExit(job.process.error_message())
            results = job.finish()
        path = offscreen.slicer_layout_snapshot(
            ctx, results, args.out, int(results.summary["es_frame"]),
            panel_lines(cine.proxy.GetName(), options, results.summary))
    print(path, results.summary["LV_EF_pct"])


if __name__ == "__main__":
    main()
