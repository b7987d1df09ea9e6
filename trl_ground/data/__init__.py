"""Data: the grounding JSON and other formats -> validated records -> prompts and targets -> TRL batches."""
