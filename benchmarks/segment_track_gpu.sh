#!/bin/bash
# Segment & Track of the demo cine (patient090, 12 frames) on a GPU, twice per prior (the
# first run pays CUDA's start-up), without meshes (VTK's wheel is too large to carry to the
# lent GPU machine). Prints the wall time of the process, its peak RSS and the engine's own
# runtime and stage seconds from summary.json.
#
#   bash benchmarks/segment_track_gpu.sh [PRIOR ...]   (default: the bundled prior)
CINE=tests/data/acdc/patient090/patient090_4d.nii.gz
for PR in "${@:-}"; do
  for i in 1 2; do
    python3 -c "import subprocess,resource,sys,time; t=time.time(); r=subprocess.run(sys.argv[1:]); print('wall_s', round(time.time()-t,2), 'rc', r.returncode, 'peak_rss_mb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)" \
      python3 -m nimosef_engine segment-track $CINE --out /tmp/st_gpu_$i --overwrite --no-meshes \
      --device cuda --progress none ${PR:+--prior $PR} 2>&1 | grep -v INFO
    python3 -c "import json; d=json.load(open('/tmp/st_gpu_$i/summary.json')); print('${PR:-bundled}', $i, d['runtime_s'], d['stage_seconds'], d['fit']['steps'])"
  done
done
