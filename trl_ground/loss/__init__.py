"""The grounding loss: the rollout (scores, advantages, box credit), the fused forward pass, the policy term."""
