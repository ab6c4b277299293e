"""What a submission folder holds, by name: the files rtsr reads from it and the folder of
results it may carry. A module of its own so that the Hub code and the submission code can
both read it without importing each other."""

from typing import Final

#: The one file a submission must have: the architecture, with a top-level ``srmodel()``.
ARCH_FILE: Final = "arch.py"
#: The optional metadata: scale, team, method, license, entry point.
METADATA_FILE: Final = "submission.json"
#: The optional folder of the participant's own outputs on the challenge's LR images.
RESULTS_DIR: Final = "results"
