import sys

from llmkernels.cli import main

sys.exit(main())
