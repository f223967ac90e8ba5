from nimosef_engine.cli import entry

entry()
