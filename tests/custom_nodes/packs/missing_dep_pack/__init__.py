import loom_fixture_missing_dependency  # noqa: F401  (listed in requirements.txt, never installed)

NODE_CLASS_MAPPINGS = {}
