"""deploy: how a bsemu run is launched (the `bsemu` command line, YAML configs, Ray cluster helpers)."""
