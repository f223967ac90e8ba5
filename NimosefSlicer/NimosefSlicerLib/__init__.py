"""Qt-free scene code of the NIMOSEF Slicer module.

``cine`` (cine <-> volume sequence, NIfTI export), ``segments`` (labels, terminology,
colours), ``glyphs`` (displacement arrows), ``curves`` (volume table, chart, CSV),
``results`` (segment-track output -> synchronised sequences), ``runner`` (engine process,
progress, cancel), ``workflow`` (Segment & Track and resample jobs), ``scenarios`` (checks
shared by the self-test and pytest), ``offscreen`` (real slice / 3D views without the app),
``context`` (scene + logics, from the app or headless). Nothing here imports ``qt``.
"""
