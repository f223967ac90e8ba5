from nimosef_engine.cli import main

raise SystemExit(main())
