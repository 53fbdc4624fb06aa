"""What a serving process tells about itself: /metrics, the sampled operator figures, the status records."""
