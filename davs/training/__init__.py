"""Training: tasks (one per DAVS stage), the loop, distributed helpers and checkpoints."""
