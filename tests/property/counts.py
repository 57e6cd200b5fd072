"""Examples run per property test (pytest node id), counted by strategies.check and printed by
conftest.py's terminal summary."""

import collections

EXAMPLES = collections.Counter()
