"""Calls sys.exit() at import, as some packs do when a dependency is missing."""
import sys

sys.exit("exit_pack: dependency missing, bye")
